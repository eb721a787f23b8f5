// The manager server: a registry of type-erased objects by id with reference counts, and one
// thread per client connection running that client's requests in order.
//
// Why threads and not an event loop: blocking operations (Queue::get, Lock::acquire,
// Event::wait, Barrier::wait) then block only their own connection's thread, as in Python's
// server, with no continuation machinery. A blocked thread polls its peer every few tens of
// milliseconds, so that a client killed in the middle of a blocking call frees its thread
// (and any lock it holds) promptly.
#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <mutex>
#include <poll.h>
#include <stdexcept>
#include <sys/socket.h>
#include <thread>
#include <typeinfo>
#include <unistd.h>
#include <unordered_map>

#include "mproc/listener.hpp"
#include "mproc/managers.hpp"
#include "core/demangle.hpp"
#include "managers/manager_spin.hpp"
#include "mproc/detail/task.hpp"

namespace mproc::detail::manager {
namespace {

using Clock = std::chrono::steady_clock;

struct Failure {
  Status status;
  std::string message;
};
[[noreturn]] void fail(Status status, std::string message) { throw Failure{status, std::move(message)}; }

struct PeerGone {};

struct Session;

struct Object {
  Kind kind;
  std::mutex mutex;
  std::condition_variable changed;
  std::map<Blob, Blob> map;      // dict, namespace
  std::vector<Blob> items;       // list, array
  std::deque<Blob> queue;        // queue
  Blob value;                    // value
  std::int64_t maxsize = 0;      // queue (0: unbounded); barrier: parties
  std::int64_t unfinished = 0;   // joinable queue
  std::uint64_t owner = 0;       // lock, rlock, condition: the owning connection (0: free)
  struct LockWaiter {
    Session* session;
    std::chrono::steady_clock::time_point since;
  };
  std::deque<LockWaiter> lock_waiters;  // lock, rlock: who waits for it, oldest first
  std::int64_t count = 0;        // rlock depth, semaphore value, barrier arrivals
  std::int64_t bound = 0;        // bounded semaphore
  bool flag = false;             // event
  std::uint64_t generation = 0;  // barrier generation; condition: notifications handed out
  std::uint64_t tickets = 0;     // condition: waiters that ever waited
  bool broken = false;           // barrier
  std::shared_ptr<void> custom;  // a BaseManager's registered type
  const Registration* registration = nullptr;
  std::string type_id;
};

struct Server {
  std::mutex mutex;  // the registry, sessions and connection list
  std::unordered_map<std::uint64_t, std::shared_ptr<Object>> objects;
  std::unordered_map<std::uint64_t, std::int64_t> refs;  // id -> count (pinned: huge)
  std::uint64_t next_id = 1;
  std::uint64_t next_connection = 1;
  std::atomic<bool> stopping{false};
  std::map<std::uint64_t, std::thread> threads;  // by connection
  std::vector<std::uint64_t> finished;  // connections whose thread has ended: joined at the next accept
  std::map<std::uint64_t, int> live_fds;  // connection -> socket, to wake them at shutdown
  Listener* listener = nullptr;
  ServerOptions options;
  const Registry* registry = nullptr;

  std::shared_ptr<Object> find(std::uint64_t id) {
    std::lock_guard lock(mutex);
    auto it = objects.find(id);
    if (it == objects.end()) fail(Status::gone, "no manager object with id " + std::to_string(id) + " (already released)");
    return it->second;
  }
  void incref(std::uint64_t id, std::int64_t n) {
    std::lock_guard lock(mutex);
    if (!objects.contains(id)) fail(Status::error, "no manager object with id " + std::to_string(id));
    refs[id] += n;
  }
  void decref(std::uint64_t id, std::int64_t n) {
    std::shared_ptr<Object> dying;  // destroyed outside the registry lock
    std::lock_guard lock(mutex);
    auto it = refs.find(id);
    if (it == refs.end()) return;
    it->second -= n;
    if (it->second <= 0) {
      refs.erase(it);
      auto object = objects.find(id);
      if (object != objects.end()) {
        dying = std::move(object->second);
        objects.erase(object);
      }
    }
  }
};

constexpr auto kPeerCheck = std::chrono::milliseconds(50);
// Objects a server holds at once: a client creating objects in a loop is refused at this
// point instead of taking the machine's memory.
constexpr std::size_t kMaxObjects = std::size_t{1} << 20;

/// One client connection: its id (the owner of locks it takes) and the references it holds.
struct Session {
  Session(Server& owner, Connection peer, std::uint64_t connection_id)
      : server(owner), connection(std::move(peer)), id(connection_id) {}

  Server& server;
  Connection connection;
  std::uint64_t id;
  std::map<std::uint64_t, std::int64_t> held;  // object -> references this connection holds
  std::map<std::shared_ptr<Object>, int> owned;  // locks held -> 1
  std::optional<Reply> deferred;  // the first failure of a one-way request, not yet told
  // Objects this connection used lately, found without the registry's lock (which every
  // connection's thread would otherwise take on every call). Weak: a released object is
  // destroyed as before, and its entry then expires.
  std::unordered_map<std::uint64_t, std::weak_ptr<Object>> recent;
  // Signalled, under the object's mutex, when a Lock or RLock this session waits for is
  // handed to it (its owner set to this session's id).
  std::condition_variable granted;
  // Locks this session released while others waited, left free for a moment in case this
  // client takes them back at once (see release()); handed to their first waiter when it
  // does not.
  std::vector<std::pair<std::uint64_t, std::shared_ptr<Object>>> released;

  std::shared_ptr<Object> object(std::uint64_t object_id) {
    if (auto it = recent.find(object_id); it != recent.end()) {
      if (auto o = it->second.lock()) return o;
      recent.erase(it);
    }
    auto o = server.find(object_id);
    if (recent.size() >= 256) recent.clear();
    recent.emplace(object_id, o);
    return o;
  }

  bool peer_gone() {
    pollfd p{connection.fileno(), POLLRDHUP, 0};
    return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
  }

  /// Waits on `o.changed` until pred() or the deadline; false on timeout. Throws PeerGone when
  /// the client hung up or the server stops.
  template <class Pred>
  bool wait(Object& o, std::unique_lock<std::mutex>& lock, std::int64_t timeout_ns, Pred pred) {
    return wait(o.changed, lock, timeout_ns, pred);
  }

  /// The same on a condition variable of one's own (`granted`: a Lock handed to this session).
  template <class Pred>
  bool wait(std::condition_variable& cv, std::unique_lock<std::mutex>& lock, std::int64_t timeout_ns, Pred pred) {
    if (pred()) return true;
    if (timeout_ns == 0) return false;
    auto deadline = timeout_ns < 0 ? Clock::time_point::max() : Clock::now() + std::chrono::nanoseconds(timeout_ns);
    for (;;) {
      // The peer first: a client killed while it waited must not take what a live one
      // would (the item that wakes it, the lock released to it).
      if (server.stopping.load() || peer_gone()) throw PeerGone{};
      if (pred()) break;
      auto now = Clock::now();
      if (now >= deadline) return false;
      auto slice = std::min<Clock::duration>(deadline - now, kPeerCheck);
      cv.wait_for(lock, slice);
    }
    return true;
  }
};

std::size_t index_of(std::int64_t i, std::size_t size, bool inclusive_end = false) {
  std::int64_t n = static_cast<std::int64_t>(size);
  if (i < 0) i += n;
  if (i < 0 || i > n || (!inclusive_end && i == n)) fail(Status::out_of_range, "index out of range");
  return static_cast<std::size_t>(i);
}

const Blob& arg(const Request& r, std::size_t i) {
  if (i >= r.args.size()) fail(Status::refused, "malformed request: missing argument");
  return r.args[i];
}


void need(const Object& o, std::initializer_list<Kind> kinds) {
  for (Kind k : kinds)
    if (o.kind == k) return;
  fail(Status::refused, "this operation is not a method of that object");
}

/// Requires o.mutex. A Lock or RLock becomes the first waiter's (at depth 1), or free.
void hand_over(Object& o) {
  if (o.lock_waiters.empty()) {
    o.owner = 0;
    o.count = 0;
    return;
  }
  Session* next = o.lock_waiters.front().session;
  o.lock_waiters.pop_front();
  o.owner = next->id;
  o.count = 1;
  next->granted.notify_one();
}

// How long a Lock's waiter may be overtaken by clients that take the lock back as soon as
// they release it, before releases hand the lock to it directly.
constexpr auto kLockPatience = std::chrono::milliseconds(10);

bool acquire(Session& s, const std::shared_ptr<Object>& op, std::unique_lock<std::mutex>& lock, std::int64_t timeout_ns) {
  Object& o = *op;
  if (o.kind == Kind::semaphore || o.kind == Kind::bounded_semaphore) {
    if (!s.wait(o, lock, timeout_ns, [&] { return o.count > 0; })) return false;
    --o.count;
    return true;
  }
  if (o.owner == s.id && o.kind != Kind::lock) {
    ++o.count;
    return true;
  }
  auto take = [&] {
    o.owner = s.id;
    o.count = 1;
    s.owned[op] = 1;
    return true;
  };
  if (o.kind == Kind::condition) return s.wait(o, lock, timeout_ns, [&] { return o.owner == 0; }) && take();
  // Lock and RLock: free, it is taken, whoever waits (see release() for why, and for how a
  // waiter is not overtaken for long); held, this session queues for it.
  if (o.owner == 0) return take();
  if (timeout_ns == 0) return false;
  o.lock_waiters.push_back({&s, Clock::now()});
  auto leave_queue = [&] {
    std::erase_if(o.lock_waiters, [&](const Object::LockWaiter& w) { return w.session == &s; });
  };
  bool mine = false;
  try {
    mine = s.wait(s.granted, lock, timeout_ns, [&] { return o.owner == s.id; });
  } catch (const PeerGone&) {
    // Dead while waiting: not a waiter any more, and a lock handed over meanwhile passes on.
    leave_queue();
    if (o.owner == s.id) hand_over(o);
    throw;
  }
  if (!mine) {
    leave_queue();
    return false;
  }
  return take();  // hand_over() made it ours at depth 1 already; take() records it
}

void release(Session& s, std::uint64_t id, const std::shared_ptr<Object>& op, std::int64_t n) {
  Object& o = *op;
  if (o.kind == Kind::semaphore || o.kind == Kind::bounded_semaphore) {
    if (n < 1) fail(Status::value_error, "release count must be at least 1");
    if (o.kind == Kind::bounded_semaphore && o.count + n > o.bound) fail(Status::value_error, "Semaphore released too many times");
    o.count += n;
    o.changed.notify_all();
    return;
  }
  if (o.owner != s.id) fail(Status::runtime_error, "cannot release un-acquired lock");
  if (--o.count == 0) {
    s.owned.erase(op);
    if (o.kind == Kind::condition) {
      o.owner = 0;
      o.changed.notify_all();
    } else if (o.lock_waiters.empty() || Clock::now() - o.lock_waiters.front().since >= kLockPatience) {
      hand_over(o);
    } else {
      // A client that releases a lock usually takes it back within microseconds (a loop of
      // acquire; work; release), and its next request is often already here. Handing the
      // lock to a waiter instead means waking that client's server thread and then the
      // client, each waiting for a CPU when clients outnumber cores: several times the work
      // under the lock. So the lock stays free for this client's next request or for
      // the spin window (serve_connection()); the waiter gets it after that, and directly once
      // it has waited kLockPatience. Python's server Lock lets releasers overtake too, with
      // no bound.
      o.owner = 0;
      o.count = 0;
      s.released.emplace_back(id, op);
    }
  }
}

Reply run_object(Session& s, const Request& r) {
  auto op = s.object(r.id);
  Object& o = *op;
  Reply reply;
  std::unique_lock lock(o.mutex);
  switch (r.op) {
    // dict / namespace
    case Op::d_set: need(o, {Kind::dict, Kind::namespace_}); o.map.insert_or_assign(arg(r, 0), arg(r, 1)); break;
    case Op::d_get: {
      need(o, {Kind::dict, Kind::namespace_});
      auto it = o.map.find(arg(r, 0));
      if (it == o.map.end()) fail(Status::key_error, o.kind == Kind::namespace_ ? "no such Namespace attribute" : "key not in dict");
      reply.results.push_back(it->second);
      break;
    }
    case Op::d_get_optional: {
      need(o, {Kind::dict});
      auto it = o.map.find(arg(r, 0));
      if (it != o.map.end()) reply.results.push_back(it->second);
      break;
    }
    case Op::d_contains: need(o, {Kind::dict, Kind::namespace_}); reply.number = o.map.contains(arg(r, 0)); break;
    case Op::d_pop: {
      need(o, {Kind::dict, Kind::namespace_});
      auto it = o.map.find(arg(r, 0));
      if (it == o.map.end()) fail(Status::key_error, o.kind == Kind::namespace_ ? "no such Namespace attribute" : "key not in dict");
      reply.results.push_back(std::move(it->second));
      o.map.erase(it);
      break;
    }
    case Op::d_setdefault: {
      need(o, {Kind::dict});
      auto [it, inserted] = o.map.try_emplace(arg(r, 0), arg(r, 1));
      reply.results.push_back(it->second);
      break;
    }
    case Op::d_update:
      need(o, {Kind::dict});
      if (r.args.size() % 2 != 0) fail(Status::refused, "malformed request: odd item count");
      for (std::size_t i = 0; i < r.args.size(); i += 2) o.map.insert_or_assign(r.args[i], r.args[i + 1]);
      break;
    case Op::d_size: need(o, {Kind::dict}); reply.number = static_cast<std::int64_t>(o.map.size()); break;
    case Op::d_keys: need(o, {Kind::dict}); for (auto& [k, v] : o.map) reply.results.push_back(k); break;
    case Op::d_values: need(o, {Kind::dict}); for (auto& [k, v] : o.map) reply.results.push_back(v); break;
    case Op::d_items:
      need(o, {Kind::dict});
      for (auto& [k, v] : o.map) {
        reply.results.push_back(k);
        reply.results.push_back(v);
      }
      break;
    case Op::d_clear: need(o, {Kind::dict}); o.map.clear(); break;
    case Op::d_update_with: {
      need(o, {Kind::dict});
      auto adapter = resolve<UpdateAdapter>(loads<CodeRef>(arg(r, 2)));
      auto fn = loads<CodeRef>(arg(r, 3));
      auto it = o.map.find(arg(r, 0));
      Blob updated = adapter(fn, it == o.map.end() ? nullptr : &it->second, arg(r, 1));
      reply.results.push_back(updated);
      o.map.insert_or_assign(arg(r, 0), std::move(updated));
      break;
    }
    // list / array
    case Op::l_append: need(o, {Kind::list}); o.items.push_back(arg(r, 0)); break;
    case Op::l_extend: need(o, {Kind::list}); o.items.insert(o.items.end(), r.args.begin(), r.args.end()); break;
    case Op::l_get: need(o, {Kind::list, Kind::array}); reply.results.push_back(o.items[index_of(r.number, o.items.size())]); break;
    case Op::l_set: need(o, {Kind::list, Kind::array}); o.items[index_of(r.number, o.items.size())] = arg(r, 0); break;
    case Op::l_insert: {
      need(o, {Kind::list});
      // Python clamps an insert index to the list instead of failing.
      std::int64_t n = static_cast<std::int64_t>(o.items.size());
      std::int64_t i = r.number < 0 ? std::max<std::int64_t>(0, r.number + n) : std::min(r.number, n);
      o.items.insert(o.items.begin() + i, arg(r, 0));
      break;
    }
    case Op::l_pop_back:
    case Op::l_pop: {
      need(o, {Kind::list});
      if (o.items.empty()) fail(Status::out_of_range, "pop from empty list");
      std::size_t i = r.op == Op::l_pop_back ? o.items.size() - 1 : index_of(r.number, o.items.size());
      reply.results.push_back(std::move(o.items[i]));
      o.items.erase(o.items.begin() + static_cast<std::ptrdiff_t>(i));
      break;
    }
    case Op::l_remove: {
      need(o, {Kind::list});
      auto it = std::find(o.items.begin(), o.items.end(), arg(r, 0));
      if (it == o.items.end()) fail(Status::value_error, "list.remove(x): x not in list");
      o.items.erase(it);
      break;
    }
    case Op::l_index: {
      need(o, {Kind::list});
      auto it = std::find(o.items.begin(), o.items.end(), arg(r, 0));
      if (it == o.items.end()) fail(Status::value_error, "list.index(x): x not in list");
      reply.number = it - o.items.begin();
      break;
    }
    case Op::l_count: need(o, {Kind::list}); reply.number = std::count(o.items.begin(), o.items.end(), arg(r, 0)); break;
    case Op::l_size: need(o, {Kind::list, Kind::array}); reply.number = static_cast<std::int64_t>(o.items.size()); break;
    case Op::l_copy: need(o, {Kind::list, Kind::array}); reply.results = o.items; break;
    case Op::l_clear: need(o, {Kind::list}); o.items.clear(); break;
    // value
    case Op::v_get: need(o, {Kind::value}); reply.results.push_back(o.value); break;
    case Op::v_set: need(o, {Kind::value}); o.value = arg(r, 0); break;
    case Op::v_apply: {
      need(o, {Kind::value});
      auto adapter = resolve<UpdateAdapter>(loads<CodeRef>(arg(r, 0)));
      o.value = adapter(loads<CodeRef>(arg(r, 1)), &o.value, o.value);
      reply.results.push_back(o.value);
      break;
    }
    // queue
    case Op::q_put:
      need(o, {Kind::queue, Kind::joinable_queue});
      if (!s.wait(o, lock, r.timeout_ns, [&] { return o.maxsize <= 0 || static_cast<std::int64_t>(o.queue.size()) < o.maxsize; }))
        fail(Status::full, "queue is full");
      o.queue.push_back(arg(r, 0));
      ++o.unfinished;
      o.changed.notify_all();
      break;
    case Op::q_get:
      need(o, {Kind::queue, Kind::joinable_queue});
      if (!s.wait(o, lock, r.timeout_ns, [&] { return !o.queue.empty(); })) fail(Status::empty, "queue is empty");
      reply.results.push_back(std::move(o.queue.front()));
      o.queue.pop_front();
      o.changed.notify_all();
      break;
    case Op::q_qsize: need(o, {Kind::queue, Kind::joinable_queue}); reply.number = static_cast<std::int64_t>(o.queue.size()); break;
    case Op::q_empty: need(o, {Kind::queue, Kind::joinable_queue}); reply.number = o.queue.empty(); break;
    case Op::q_full:
      need(o, {Kind::queue, Kind::joinable_queue});
      reply.number = o.maxsize > 0 && static_cast<std::int64_t>(o.queue.size()) >= o.maxsize;
      break;
    case Op::q_task_done:
      need(o, {Kind::joinable_queue});
      if (o.unfinished <= 0) fail(Status::value_error, "task_done() called too many times");
      if (--o.unfinished == 0) o.changed.notify_all();
      break;
    case Op::q_join: need(o, {Kind::joinable_queue}); s.wait(o, lock, -1, [&] { return o.unfinished == 0; }); break;
    // locks and semaphores
    case Op::k_acquire:
      need(o, {Kind::lock, Kind::rlock, Kind::condition, Kind::semaphore, Kind::bounded_semaphore});
      reply.number = acquire(s, op, lock, r.timeout_ns);
      break;
    case Op::k_release:
      need(o, {Kind::lock, Kind::rlock, Kind::condition, Kind::semaphore, Kind::bounded_semaphore});
      release(s, r.id, op, r.number == 0 ? 1 : r.number);
      break;
    case Op::k_value: need(o, {Kind::semaphore, Kind::bounded_semaphore}); reply.number = o.count; break;
    // event
    case Op::e_set: need(o, {Kind::event}); o.flag = true; o.changed.notify_all(); break;
    case Op::e_clear: need(o, {Kind::event}); o.flag = false; break;
    case Op::e_is_set: need(o, {Kind::event}); reply.number = o.flag; break;
    case Op::e_wait: need(o, {Kind::event}); reply.number = s.wait(o, lock, r.timeout_ns, [&] { return o.flag; }); break;
    // condition: the lock is released for the wait and taken back after, at its depth.
    case Op::c_wait: {
      need(o, {Kind::condition});
      if (o.owner != s.id) fail(Status::runtime_error, "cannot wait on un-acquired lock");
      std::int64_t depth = o.count;
      std::uint64_t ticket = o.tickets++;
      o.owner = 0;
      o.count = 0;
      s.owned.erase(op);
      o.changed.notify_all();
      bool notified = s.wait(o, lock, r.timeout_ns, [&] { return o.generation > ticket; });
      s.wait(o, lock, -1, [&] { return o.owner == 0; });
      o.owner = s.id;
      o.count = depth;
      s.owned[op] = 1;
      reply.number = notified;
      break;
    }
    case Op::c_notify: {
      need(o, {Kind::condition});
      if (o.owner != s.id) fail(Status::runtime_error, "cannot notify on un-acquired lock");
      std::uint64_t n = r.number < 0 ? o.tickets - o.generation : static_cast<std::uint64_t>(r.number);
      o.generation = std::min(o.tickets, o.generation + n);
      o.changed.notify_all();
      break;
    }
    // barrier
    case Op::b_wait: {
      need(o, {Kind::barrier});
      if (o.broken) fail(Status::broken_barrier, "barrier is broken");
      std::uint64_t generation = o.generation;
      std::int64_t epoch = o.bound;  // reset() counts in `bound`: a reset breaks this wait
      std::int64_t index = o.count++;
      if (o.count == o.maxsize) {
        ++o.generation;
        o.count = 0;
        o.changed.notify_all();
        reply.number = index;
        break;
      }
      bool passed = false;
      try {
        passed = s.wait(o, lock, r.timeout_ns, [&] { return o.generation != generation || o.broken || o.bound != epoch; });
      } catch (const PeerGone&) {
        // A party died waiting: the others would wait for it for ever (Python's abort()).
        o.broken = true;
        o.changed.notify_all();
        throw;
      }
      if (passed && o.bound != epoch) fail(Status::broken_barrier, "the barrier was reset while waiting");
      if (!passed || o.broken) {
        if (!o.broken) {
          o.broken = true;
          o.changed.notify_all();
        }
        fail(Status::broken_barrier, passed ? "barrier is broken" : "barrier wait timed out (the barrier is now broken)");
      }
      reply.number = index;
      break;
    }
    case Op::b_abort: need(o, {Kind::barrier}); o.broken = true; o.changed.notify_all(); break;
    case Op::b_reset:
      // Waiters see the epoch change and fail with BrokenBarrierError; the barrier is whole.
      need(o, {Kind::barrier});
      ++o.bound;
      o.count = 0;
      o.broken = false;
      o.changed.notify_all();
      break;
    case Op::b_parties: need(o, {Kind::barrier}); reply.number = o.maxsize; break;
    case Op::b_n_waiting: need(o, {Kind::barrier}); reply.number = o.count; break;
    case Op::b_broken: need(o, {Kind::barrier}); reply.number = o.broken; break;
    default: fail(Status::refused, "unknown operation");
  }
  return reply;
}

Reply create_object(Session& s, const Request& r) {
  auto kind_number = r.args.empty() ? -1 : static_cast<int>(loads<std::uint8_t>(r.args[0]));
  if (kind_number < 0 || kind_number > static_cast<int>(Kind::custom)) fail(Status::refused, "unknown object kind");
  auto o = std::make_shared<Object>();
  o->kind = static_cast<Kind>(kind_number);
  switch (o->kind) {
    case Kind::value: o->value = arg(r, 1); break;
    case Kind::array:
      if (r.number < 0 || r.number > (1 << 24)) fail(Status::value_error, "Array size out of range");
      // Either the items themselves (one argument each after the kind), or one fill value.
      // For a single item the two are the same array.
      if (r.args.size() == static_cast<std::size_t>(r.number) + 1)
        o->items.assign(r.args.begin() + 1, r.args.end());
      else
        o->items.assign(static_cast<std::size_t>(r.number), arg(r, 1));
      break;
    case Kind::queue:
    case Kind::joinable_queue: o->maxsize = r.number; break;
    case Kind::semaphore:
    case Kind::bounded_semaphore:
      if (r.number < 0) fail(Status::value_error, "semaphore initial value must be >= 0");
      o->count = o->bound = r.number;
      break;
    case Kind::barrier:
      if (r.number < 1) fail(Status::value_error, "a Barrier needs at least one party");
      o->maxsize = r.number;
      break;
    case Kind::custom: {
      o->type_id = loads<std::string>(arg(r, 1));
      auto it = s.server.registry == nullptr ? Registry::const_iterator{} : s.server.registry->find(o->type_id);
      if (s.server.registry == nullptr || it == s.server.registry->end())
        fail(Status::refused, "no type registered as '" + o->type_id + "' in this manager");
      o->registration = &it->second;
      o->custom = it->second.factory();
      if (!o->custom) fail(Status::error, "the factory of '" + o->type_id + "' returned nothing");
      break;
    }
    default: break;
  }
  Reply reply;
  std::lock_guard lock(s.server.mutex);
  if (s.server.objects.size() >= kMaxObjects) fail(Status::refused, "the manager holds too many objects");
  std::uint64_t id = s.server.next_id++;
  s.server.objects.emplace(id, std::move(o));
  s.server.refs[id] = 1;
  ++s.held[id];
  reply.number = static_cast<std::int64_t>(id);
  return reply;
}

Reply run(Session& s, const Request& r) {
  switch (r.op) {
    case Op::hello: return {};
    case Op::create: return create_object(s, r);
    case Op::incref:
      s.server.incref(r.id, 1);
      ++s.held[r.id];
      return {};
    case Op::decref: {
      auto it = s.held.find(r.id);
      // A connection only gives back what it took: a hostile or confused client cannot
      // release other clients' objects.
      if (it == s.held.end() || it->second <= 0) return {};
      if (--it->second == 0) s.held.erase(it);
      s.server.decref(r.id, 1);
      return {};
    }
    case Op::pin: s.server.incref(r.id, std::int64_t{1} << 40); return {};
    case Op::call_method: {
      // No object lock: as in Python, methods of a registered object run concurrently for
      // different clients (a method may block, as a queue's get does).
      auto o = s.object(r.id);
      if (o->kind != Kind::custom) fail(Status::refused, "not an object of a registered type");
      if (r.number < 0 || r.number >= static_cast<std::int64_t>(o->registration->methods.size()))
        fail(Status::refused, "method #" + std::to_string(r.number) + " is not exposed by '" + o->type_id + "'");
      Reply reply;
      reply.results.push_back(o->registration->methods[static_cast<std::size_t>(r.number)](o->custom.get(), arg(r, 0)));
      return reply;
    }
    case Op::shutdown: {
      s.server.stopping = true;
      if (s.server.listener != nullptr) s.server.listener->close();
      return {};
    }
    default: return run_object(s, r);
  }
}

/// Hands each lock this session left free (release()) to its first waiter, unless it was
/// taken since; `keep` (an id, 0 for none) stays free: the request about to run takes it.
void settle_releases(Session& s, std::uint64_t keep = 0) {
  std::erase_if(s.released, [&](const std::pair<std::uint64_t, std::shared_ptr<Object>>& entry) {
    Object& o = *entry.second;
    std::lock_guard lock(o.mutex);
    if (o.owner != 0 || o.lock_waiters.empty()) return true;
    if (entry.first == keep) return false;
    hand_over(o);
    return true;
  });
}

void end_session(Session& s) {
  settle_releases(s);
  // Locks a dead client held are released, as the OS releases a dead thread's robust mutex.
  for (auto& [op, unused] : s.owned) {
    std::lock_guard lock(op->mutex);
    if (op->owner == s.id) {
      if (op->kind == Kind::condition) {
        op->owner = 0;
        op->count = 0;
        op->changed.notify_all();
      } else {
        hand_over(*op);
      }
    }
  }
  s.owned.clear();
  for (auto& [id, n] : s.held) s.server.decref(id, n);
  s.held.clear();
}

void serve_connection(Server& server, Connection connection, std::uint64_t id) {
  Session s(server, std::move(connection), id);
  s.connection.max_message_size(server.options.max_message_size);
  try {
    while (!server.stopping.load()) {
      // The client's next request usually follows at once. Locks it released and left
      // free to take back go to their waiters if none comes within the spin window, or
      // if one comes that is not the acquire of that lock.
      if (!message_within_spin_window(s.connection) && !s.released.empty()) settle_releases(s);
      Request request = s.connection.recv<Request>();
      if (!s.released.empty()) settle_releases(s, request.op == Op::k_acquire ? request.id : 0);
      Reply reply;
      if (!request.one_way && s.deferred) {
        // An earlier one-way request failed: its failure answers this request, not run.
        reply = std::move(*s.deferred);
        s.deferred.reset();
        reply.message = "an earlier call that did not wait for its reply failed (this call did not run): " + reply.message;
        s.connection.send(reply);
        continue;
      }
      try {
        reply = run(s, request);
      } catch (const Failure& f) {
        reply.status = f.status;
        reply.message = f.message;
      } catch (const PeerGone&) {
        break;
      } catch (...) {
        // A user function's exception, a malformed argument: the client hears of it, with
        // the exception's type, and the server goes on.
        reply.status = Status::error;
        reply.results = {dumps(describe_current_exception(static_cast<std::int32_t>(::getpid())))};
      }
      if (request.one_way) {
        // One-way ops never take anything (no get is one-way), so nothing can be lost here.
        // An object already released is one nobody can observe any more: a set or release
        // that reaches it after the last reference went (on the process's other
        // connection) changes nothing anyone can see, and is not an error.
        if (reply.status != Status::ok && reply.status != Status::gone && !s.deferred) s.deferred = std::move(reply);
        continue;
      }
      try {
        s.connection.send(reply);
      } catch (...) {
        // The client died between taking an item and hearing of it: put the item back, so
        // that nothing a producer put is lost to a dead consumer.
        if (request.op == Op::q_get && reply.status == Status::ok && !reply.results.empty()) {
          try {
            auto o = server.find(request.id);
            std::lock_guard lock(o->mutex);
            o->queue.push_front(std::move(reply.results[0]));
            o->changed.notify_all();
          } catch (...) {
          }
        }
        throw;
      }
      if (request.op == Op::shutdown) break;
    }
  } catch (const std::exception&) {
    // The peer hung up, sent garbage, or an oversize frame: drop this connection only.
  }
  end_session(s);
  std::lock_guard lock(server.mutex);
  server.live_fds.erase(id);
  server.finished.push_back(id);  // the last thing this thread does with the server
}

}  // namespace

void serve(Listener& listener, const ServerOptions& options, const Registry* registry) {
  Server server;
  server.registry = registry;
  server.listener = &listener;
  server.options = options;
  while (!server.stopping.load()) {
    Connection connection;
    try {
      connection = listener.accept();
    } catch (const AuthenticationError&) {
      continue;  // a wrong key: refused, the server goes on
    } catch (const OSError& e) {
      if (e.errno_value() == EMFILE || e.errno_value() == ENFILE) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      break;  // closed by a shutdown request
    } catch (const std::exception&) {
      continue;
    }
    std::lock_guard lock(server.mutex);
    if (server.live_fds.size() >= options.max_connections) continue;  // dropped: too many clients
    std::uint64_t id = server.next_connection++;
    server.live_fds[id] = connection.fileno();
    // Join the threads of connections that ended, so that a client that connects and
    // disconnects in a loop costs nothing that accumulates.
    for (std::uint64_t done : server.finished) {
      auto it = server.threads.find(done);
      if (it != server.threads.end()) {
        it->second.join();
        server.threads.erase(it);
      }
    }
    server.finished.clear();
    server.threads.emplace(id, std::thread(serve_connection, std::ref(server), std::move(connection), id));
  }
  server.stopping = true;
  {
    // Wake every connection thread: blocked reads end with EOF, blocked waits see stopping.
    std::lock_guard lock(server.mutex);
    for (auto& [id, fd] : server.live_fds) ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& [id, t] : server.threads) t.join();
}

}  // namespace mproc::detail::manager
