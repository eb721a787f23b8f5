// The client side of a manager: connections to the server, object references, the
// SyncManager that starts and stops its server process.
//
// Two kinds of connection per process and server:
// - one per thread, for the objects' methods: a blocking call (Queue::get, Lock::acquire)
//   holds only its own thread's connection, and a Lock is owned by the thread (its
//   connection) that took it, as in Python;
// - one per process, for reference counts (create, incref, decref): references then live
//   as long as the process, whichever thread made or drops them. Those calls never block
//   in the server, so one mutex-guarded connection serves every thread.
// After fork the child closes its copies of both (pthread_atfork, and a pid check for the
// forking thread's own): it must not talk on its parent's connections.
#include <fcntl.h>
#include <mutex>
#include <pthread.h>
#include <unistd.h>
#include <unordered_map>

#include "mproc/listener.hpp"
#include "mproc/managers.hpp"
#include "mproc/detail/task.hpp"
#include "process/child_process.hpp"
#include "managers/manager_spin.hpp"
#include "sys/random.hpp"
#include "sys/spawn.hpp"

namespace mproc::detail::manager {

std::string channel_key(const Endpoint& e) {
  std::string key = std::to_string(static_cast<int>(e.address.kind())) + e.address.to_string();
  key.push_back('\0');
  if (e.authkey) key += "k" + *e.authkey;
  return key;
}

namespace {

Connection connect(const Endpoint& e) {
  ClientOptions options;
  options.authkey = e.authkey;
  options.timeout = std::chrono::seconds(10);
  try {
    Connection c = Client(e.address, options);
    c.max_message_size(ServerOptions{}.max_message_size);
    return c;
  } catch (const OSError& error) {
    if (error.errno_value() == ECONNREFUSED || error.errno_value() == ENOENT)
      throw EOFError("the manager at " + e.address.to_string() + " is not running (" + error.what() + ")");
    throw;
  }
}

[[noreturn]] void throw_status(const Reply& reply) {
  switch (reply.status) {
    case Status::key_error: throw KeyError(reply.message);
    case Status::out_of_range: throw std::out_of_range(reply.message);
    case Status::value_error: throw std::invalid_argument(reply.message);
    case Status::empty: throw Empty();
    case Status::full: throw Full();
    case Status::timeout: throw TimeoutError(reply.message);
    case Status::broken_barrier: throw BrokenBarrierError(reply.message);
    case Status::runtime_error: throw Error(reply.message);
    case Status::refused: throw Error("the manager refused the call: " + reply.message);
    case Status::gone: throw Error(reply.message);
    case Status::error:
      if (reply.results.size() == 1) std::rethrow_exception(rebuild_exception(loads<RemoteFailure>(reply.results[0])));
      throw Error(reply.message);
    case Status::ok: break;
  }
  throw Error("the manager replied with an unknown status");
}

Reply exchange(Connection& c, const Endpoint& e, const Request& request) {
  try {
    c.send(request);
    (void)message_within_spin_window(c);  // the reply usually comes within microseconds
    return c.recv<Reply>();
  } catch (const EOFError&) {
    c.close();
    throw EOFError("the manager at " + e.address.to_string() + " is gone (its connection closed)");
  } catch (const OSError& error) {
    c.close();
    throw EOFError("the manager at " + e.address.to_string() + " is gone (" + error.what() + ")");
  }
}

struct ThreadChannel {
  Connection connection;
  Endpoint endpoint;
  bool unacknowledged = false;  // one-way calls sent since the last reply
};

void flush(ThreadChannel& channel) noexcept {
  // A round trip orders this thread's one-way calls before whatever follows (a parent's
  // join(), another thread's reads): the server runs a connection's requests in order.
  if (!channel.unacknowledged || channel.connection.closed()) return;
  channel.unacknowledged = false;
  try {
    Request hello;
    hello.op = Op::hello;
    channel.connection.send(hello);
    (void)channel.connection.recv<Reply>();
  } catch (...) {
  }
}

struct ThreadChannels {
  pid_t pid = 0;
  std::unordered_map<std::string, ThreadChannel> connections;
  ~ThreadChannels() {
    if (pid == sys::current_pid())
      for (auto& [key, channel] : connections) flush(channel);
  }
};
thread_local ThreadChannels t_channels;

void flush_this_thread() noexcept {
  if (t_channels.pid != sys::current_pid()) return;
  for (auto& [key, channel] : t_channels.connections) flush(channel);
}

struct ProcessChannels {
  std::mutex mutex;
  std::unordered_map<std::string, Connection> connections;
};
ProcessChannels* g_process = nullptr;
std::mutex* g_process_mutex = nullptr;
std::once_flag g_atfork_once;

void after_fork_in_child() noexcept {
  // The only thread now: close our copies of the parent's reference connections (the
  // parent's sessions stay its own) and start afresh. The old objects are leaked on purpose:
  // their mutexes may have been held by threads that do not exist here.
  if (g_process != nullptr)
    for (auto& [key, c] : g_process->connections) c.close();
  g_process = nullptr;
  g_process_mutex = new std::mutex;
}

ProcessChannels& process_channels() {
  static std::mutex* first = [] {
    g_process_mutex = new std::mutex;
    ::pthread_atfork(nullptr, nullptr, after_fork_in_child);
    return g_process_mutex;
  }();
  (void)first;
  std::lock_guard lock(*g_process_mutex);
  if (g_process == nullptr) g_process = new ProcessChannels;
  return *g_process;
}

Reply checked(Reply reply) {
  if (reply.status != Status::ok) throw_status(reply);
  return reply;
}

}  // namespace

namespace {
ThreadChannel& thread_connection(const Endpoint& endpoint, const std::string& key) {
  ThreadChannels& t = t_channels;
  // A Process child ends with _exit: no thread_local destructor flushes there.
  static const bool hooked = [] {
    before_child_exit = flush_this_thread;
    return true;
  }();
  (void)hooked;
  if (t.pid != sys::current_pid()) {
    for (auto& [unused, c] : t.connections) c.connection.close();
    t.connections.clear();
    t.pid = sys::current_pid();
  }
  auto it = t.connections.find(key);
  if (it == t.connections.end() || it->second.connection.closed())
    it = t.connections.insert_or_assign(key, ThreadChannel{connect(endpoint), endpoint, false}).first;
  return it->second;
}
}  // namespace

Reply call(const Endpoint& endpoint, const Request& request) { return call(endpoint, channel_key(endpoint), request); }

Reply call(const Endpoint& endpoint, const std::string& key, const Request& request) {
  ThreadChannel& channel = thread_connection(endpoint, key);
  channel.unacknowledged = false;
  return checked(exchange(channel.connection, endpoint, request));
}

void post(const Endpoint& endpoint, const std::string& key, const Request& request) {
  ThreadChannel& channel = thread_connection(endpoint, key);
  Connection& c = channel.connection;
  channel.unacknowledged = true;
  try {
    c.send(request);
  } catch (const OSError& error) {
    c.close();
    throw EOFError("the manager at " + endpoint.address.to_string() + " is gone (" + error.what() + ")");
  }
}

namespace {
Reply call_refs(const Endpoint& endpoint, const Request& request) {
  ProcessChannels& p = process_channels();
  std::lock_guard lock(p.mutex);
  std::string key = channel_key(endpoint);
  auto it = p.connections.find(key);
  if (it == p.connections.end() || it->second.closed()) it = p.connections.insert_or_assign(key, connect(endpoint)).first;
  return checked(exchange(it->second, endpoint, request));
}
}  // namespace

void save_endpoint(Encoder& encoder, const Endpoint& e) {
  encode(encoder, static_cast<std::uint8_t>(e.address.kind()));
  encode(encoder, e.address.kind() == Address::Kind::tcp ? e.address.host() : e.address.path());
  encode(encoder, e.address.port());
  encode(encoder, e.authkey);
}

Endpoint load_endpoint(Decoder& decoder) {
  auto kind = decode<std::uint8_t>(decoder);
  auto name = decode<std::string>(decoder);
  auto port = decode<std::uint16_t>(decoder);
  Endpoint e;
  e.authkey = decode<std::optional<std::string>>(decoder);
  try {
    e.address = address_of(kind, name, port);
  } catch (const std::invalid_argument& error) {
    throw SerializationError(std::string("a manager proxy with a bad address: ") + error.what());
  }
  return e;
}

ObjectRef::ObjectRef(Endpoint endpoint, std::uint64_t id, bool counted)
    : endpoint_(std::move(endpoint)), channel_key_(channel_key(endpoint_)), id_(id), counted_in_(counted ? sys::current_pid() : 0) {}

ObjectRef::~ObjectRef() {
  if (counted_in_.load() != sys::current_pid()) return;
  try {
    Request r;
    r.id = id_;
    r.op = Op::decref;
    call_refs(endpoint_, r);
  } catch (...) {
    // The server is gone: nothing to give back.
  }
}

void ObjectRef::adopt() {
  pid_t self = sys::current_pid();
  if (counted_in_.load(std::memory_order_acquire) == self) return;
  Request r;
  r.id = id_;
  r.op = Op::incref;
  call_refs(endpoint_, r);
  counted_in_.store(self, std::memory_order_release);
}

Request ObjectRef::request(Op op, std::vector<Blob> args, std::int64_t number) {
  adopt();
  Request r;
  r.id = id_;
  r.op = op;
  r.number = number;
  r.args = std::move(args);
  return r;
}

Reply ObjectRef::call(Op op, std::vector<Blob> args, std::int64_t number, std::int64_t timeout_ns) {
  Request r = request(op, std::move(args), number);
  r.timeout_ns = timeout_ns;
  return manager::call(endpoint_, channel_key_, r);
}

void ObjectRef::post(Op op, std::vector<Blob> args, std::int64_t number) {
  Request r = request(op, std::move(args), number);
  r.one_way = true;
  manager::post(endpoint_, channel_key_, r);
}

void ObjectRef::pin() {
  if (pinned_.exchange(true)) return;
  Request r;
  r.id = id_;
  r.op = Op::pin;
  call_refs(endpoint_, r);
}

ObjectRef& ProxyBase::ref() const {
  if (!ref_) throw Error("a default-constructed manager proxy refers to nothing");
  return *ref_;
}

void ProxyBase::save_proxy(Encoder& encoder, const ObjectRef& ref) {
  save_endpoint(encoder, ref.endpoint());
  encode(encoder, ref.id());
}

std::shared_ptr<ObjectRef> ProxyBase::load_proxy(Decoder& decoder) {
  Endpoint e = load_endpoint(decoder);
  auto id = decode<std::uint64_t>(decoder);
  return std::make_shared<ObjectRef>(std::move(e), id, false);
}

Address address_of(std::uint8_t kind, const std::string& name, std::uint16_t port) {
  switch (static_cast<Address::Kind>(kind)) {
    case Address::Kind::tcp: return Address::tcp(name, port);
    case Address::Kind::unix_path: return Address::unix_path(name);
    case Address::Kind::abstract: return Address::abstract(name);
  }
  throw SerializationError("a manager address with an unknown kind");
}

void server_main(Connection ready, std::uint8_t kind, std::string name, std::uint16_t port,
                 std::optional<std::string> authkey) {
  ListenerOptions options;
  options.authkey = std::move(authkey);
  Listener listener(address_of(kind, name, port), options);
  ready.send(true);
  ready.close();
  serve(listener, ServerOptions{});
}

std::shared_ptr<ObjectRef> create_object(const Endpoint& endpoint, Kind kind, std::vector<Blob> args, std::int64_t number) {
  Request r;
  r.op = Op::create;
  r.number = number;
  args.insert(args.begin(), dumps(static_cast<std::uint8_t>(kind)));
  r.args = std::move(args);
  Reply reply = call_refs(endpoint, r);
  return std::make_shared<ObjectRef>(endpoint, static_cast<std::uint64_t>(reply.number), true);
}

void request_shutdown(const Endpoint& endpoint) {
  Request r;
  r.op = Op::shutdown;
  try {
    call(endpoint, r);
  } catch (const EOFError&) {
    throw;
  } catch (const Error&) {
    // The failure of an earlier one-way call answered this request instead of running it.
    call(endpoint, r);
  }
}

void forget(const Endpoint& endpoint) noexcept {
  std::string key = channel_key(endpoint);
  if (t_channels.pid == sys::current_pid()) t_channels.connections.erase(key);
  ProcessChannels& p = process_channels();
  std::lock_guard lock(p.mutex);
  p.connections.erase(key);
}

}  // namespace mproc::detail::manager

namespace mproc {

Manager::Manager(ManagerOptions options) {
  if (options.authkey) {
    endpoint_.authkey = std::move(options.authkey);
  } else {
    std::string key(32, '\0');
    if (int rc = sys::fill_random(key.data(), key.size()); rc < 0) throw OSError(-rc, "getrandom (manager authkey)");
    endpoint_.authkey = std::move(key);
  }
  if (options.address) {
    endpoint_.address = *options.address;
  } else {
    unsigned char id[8];
    if (int rc = sys::fill_random(id, sizeof id); rc < 0) throw OSError(-rc, "getrandom (manager address)");
    std::string name = "mproc-manager-" + std::to_string(::getpid()) + "-";
    for (unsigned char b : id) name += "0123456789abcdef"[b >> 4], name += "0123456789abcdef"[b & 15];
    endpoint_.address = Address::abstract(name);
  }
  auto [mine, theirs] = Pipe(false);
  ProcessOptions process_options;
  process_options.name = "SyncManager";
  process_options.daemon = true;
  process_options.context = options.context;
  const Address& a = endpoint_.address;
  server_.emplace(process_options, &detail::manager::server_main, std::move(theirs), static_cast<std::uint8_t>(a.kind()),
                  a.kind() == Address::Kind::tcp ? a.host() : a.path(), a.port(), endpoint_.authkey);
  server_->start();
  theirs.close();
  // Wait for "listening", or for the server to die first (it may fail to bind): the target
  // may keep a copy of the pipe's write end in this process, so EOF alone cannot tell.
  bool listening = false;
  while (!listening) {
    if (mine.poll(std::chrono::milliseconds(50))) {
      try {
        listening = mine.recv<bool>();
      } catch (const EOFError&) {
        break;
      }
    } else if (!server_->is_alive()) {
      break;
    }
  }
  if (!listening) {
    server_->join();
    throw ProcessError("the manager's server process ended before it listened on " + endpoint_.address.to_string() +
                       " (exit code " + std::to_string(server_->exitcode().value_or(0)) + "; see its stderr)");
  }
  running_ = true;
}

void Manager::shutdown() {
  if (!running_) return;
  running_ = false;
  try {
    detail::manager::request_shutdown(endpoint_);
  } catch (const std::exception&) {
    // Already gone: join below reaps it.
  }
  if (!server_->join(std::chrono::seconds(5))) {
    server_->terminate();
    server_->join();
  }
  // This thread's and this process's connections to it are dead now: close them.
  detail::manager::forget(endpoint_);
}

Manager::~Manager() {
  try {
    shutdown();
  } catch (...) {
  }
}

std::shared_ptr<detail::manager::ObjectRef> Manager::create(detail::manager::Kind kind, std::vector<detail::manager::Blob> args,
                                                           std::int64_t number) {
  if (!running_) throw Error("the manager has been shut down");
  return detail::manager::create_object(endpoint_, kind, std::move(args), number);
}

}  // namespace mproc
