// BaseManager: a server of registered types, started as a forked child or served in the
// calling process, and the process-wide registrations clients look methods up in.
#include "mproc/base_manager.hpp"

#include <mutex>

#include "mproc/context.hpp"

namespace mproc::detail::manager {
namespace {
std::mutex& registry_mutex() {
  static std::mutex mutex;
  return mutex;
}
}  // namespace

Registry& process_registry() {
  static Registry registry;
  return registry;
}

void add_to_process_registry(const std::string& type_id, const Registration& registration) {
  std::lock_guard lock(registry_mutex());
  process_registry()[type_id] = registration;
}

const Registration& find_registration(const std::string& type_id) {
  std::lock_guard lock(registry_mutex());
  auto it = process_registry().find(type_id);
  if (it == process_registry().end())
    throw Error("no type is registered as '" + type_id + "' in this process (register_type it, as the server does)");
  // Registrations are never removed, only replaced before use: the reference stays valid
  // for as long as the program does not re-register this typeid.
  return it->second;
}

}  // namespace mproc::detail::manager

namespace mproc {

BaseManager::BaseManager(Address address, std::optional<std::string> authkey) {
  endpoint_.address = std::move(address);
  endpoint_.authkey = std::move(authkey);
}

BaseManager::~BaseManager() {
  if (server_) {
    try {
      shutdown();
    } catch (...) {
    }
  }
}

BaseManager::Server BaseManager::get_server() {
  ListenerOptions options;
  options.authkey = endpoint_.authkey;
  auto listener = std::make_unique<Listener>(endpoint_.address, options);
  endpoint_.address = listener->address();
  return Server(std::move(listener), &registry_);
}

void BaseManager::Server::serve_forever() { detail::manager::serve(*listener_, detail::manager::ServerOptions{}, registry_); }

void BaseManager::start() {
  if (server_) throw ProcessError("this BaseManager has already been started");
  auto [mine, theirs] = Pipe(false);
  // Bind in the child, report the bound address (TCP port 0) through the pipe.
  auto body = [this, writer = std::make_shared<Connection>(std::move(theirs))]() {
    Server server = get_server();
    const Address& a = server.address();
    writer->send(std::make_tuple(static_cast<std::uint8_t>(a.kind()), a.kind() == Address::Kind::tcp ? a.host() : a.path(), a.port()));
    writer->close();
    server.serve_forever();
  };
  ProcessOptions options;
  options.name = "BaseManager";
  options.daemon = true;
  options.context = get_context("fork");
  server_.emplace(options, std::function<void()>(body));
  server_->start();
  std::optional<std::tuple<std::uint8_t, std::string, std::uint16_t>> bound;
  while (!bound) {
    if (mine.poll(std::chrono::milliseconds(50))) {
      try {
        bound = mine.recv<std::tuple<std::uint8_t, std::string, std::uint16_t>>();
      } catch (const EOFError&) {
        break;
      }
    } else if (!server_->is_alive()) {
      break;
    }
  }
  if (!bound) {
    server_->join();
    auto code = server_->exitcode().value_or(0);
    server_.reset();
    throw ProcessError("the BaseManager's server ended before it listened on " + endpoint_.address.to_string() +
                       " (exit code " + std::to_string(code) + "; see its stderr)");
  }
  endpoint_.address = detail::manager::address_of(std::get<0>(*bound), std::get<1>(*bound), std::get<2>(*bound));
  connected_ = true;
}

void BaseManager::connect() {
  detail::manager::Request hello;
  hello.op = detail::manager::Op::hello;
  detail::manager::call(endpoint_, hello);
  connected_ = true;
}

void BaseManager::shutdown() {
  try {
    detail::manager::request_shutdown(endpoint_);
  } catch (const std::exception&) {
    // Already gone.
  }
  if (server_) {
    if (!server_->join(std::chrono::seconds(5))) {
      server_->terminate();
      server_->join();
    }
    server_.reset();
  }
  detail::manager::forget(endpoint_);
  connected_ = false;
}

}  // namespace mproc
