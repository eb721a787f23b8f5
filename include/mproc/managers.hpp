// mproc/managers.hpp — multiprocessing.Manager: a server process that holds shared objects,
// and proxies that reach them from any process that knows the address and the key.
//
//   mproc::Manager manager;                       // starts the server (a child process)
//   auto d = manager.dict<std::string, int>();    // a DictProxy<std::string, int>
//   d.set("hits", 0);
//   mproc::Process p(count, d);                    // proxies are values: pass them anywhere
//   d.update_with("hits", &plus_one);              // atomic: runs in the server, under its lock
//
// Every call is one round trip to the server, except two one-way calls that return once sent:
// an unbounded queue's put (a producer streams), and LockProxy::release (the next holder gets
// the lock a round trip sooner). The server runs them in order with the thread's other calls
// on this manager; a thread's one-way calls are acknowledged before it exits and before a
// Process child ends, so a parent's join() sees them done (as Python's Queue feeder thread is
// flushed at exit). A release of a lock the thread does not hold (Python's RuntimeError)
// fails the thread's next call on the manager instead of running it. Values are stored encoded (mproc/codec.hpp);
// dict keys and list items compare by their encoding, which is equality for the values of
// every type whose equal values encode alike (integers, strings, aggregates of them — not
// floating point's -0.0 and 0.0, nor unordered containers).
//
// `d.set(k, d.get(k) + 1)` from several processes loses updates, exactly as Python's
// `d[k] += 1` does: two round trips, with other clients' calls in between. Use
// `d.update_with(k, &f)` / `value.apply(&f)`: one round trip, `f` runs in the server under
// the object's lock. `f` must be a plain function (it is named, as spawn names targets).
//
// Security: a client that knows the key can make the server run any plain function of the
// program (as a Python client can make the server unpickle anything). The default key is 32
// random bytes and the default address an abstract Unix socket, so only processes given a
// proxy (or the key) can connect.
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <utility>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/detail/manager_protocol.hpp"
#include "mproc/error.hpp"
#include "mproc/process.hpp"

namespace mproc {

class Listener;

namespace detail::manager {
inline std::int64_t to_ns(std::optional<std::chrono::nanoseconds> timeout) {
  if (!timeout) return -1;
  return timeout->count() < 0 ? 0 : timeout->count();
}
/// A blocking call's (block, timeout) as Request::timeout_ns (0: do not block).
inline std::int64_t to_ns(bool block, std::optional<std::chrono::nanoseconds> timeout) { return block ? to_ns(timeout) : 0; }
/// acquire(block, timeout) of a Lock, RLock, Semaphore or Condition: whether it was taken.
inline bool acquire(ObjectRef& ref, bool block, std::optional<std::chrono::nanoseconds> timeout) {
  return ref.call(Op::k_acquire, {}, 0, to_ns(block, timeout)).number != 0;
}
template <class T>
Blob blob(const T& value) {
  return dumps(value);
}
template <class T>
T unblob(const Blob& b) {
  return loads<T>(std::span<const std::byte>(b));
}
}  // namespace detail::manager

/// Python's DictProxy. Thread-safe; any method throws EOFError once the manager is gone.
template <class K, class V>
class DictProxy : public detail::manager::ProxyBase {
  using Op = detail::manager::Op;

 public:
  DictProxy() = default;
  explicit DictProxy(std::shared_ptr<detail::manager::ObjectRef> r) : ProxyBase(std::move(r)) {}

  void set(const K& k, const V& v) { ref().call(Op::d_set, {blob(k), blob(v)}); }
  /// Throws KeyError when absent.
  V get(const K& k) const { return unblob<V>(ref().call(Op::d_get, {blob(k)}).results.at(0)); }
  V get(const K& k, const V& fallback) const {
    auto r = ref().call(Op::d_get_optional, {blob(k)});
    return r.results.empty() ? fallback : unblob<V>(r.results[0]);
  }
  bool contains(const K& k) const { return ref().call(Op::d_contains, {blob(k)}).number != 0; }
  /// Removes and returns; throws KeyError when absent.
  V pop(const K& k) { return unblob<V>(ref().call(Op::d_pop, {blob(k)}).results.at(0)); }
  V setdefault(const K& k, const V& v) { return unblob<V>(ref().call(Op::d_setdefault, {blob(k), blob(v)}).results.at(0)); }
  void update(const std::map<K, V>& items) {
    std::vector<detail::manager::Blob> args;
    args.reserve(items.size() * 2);
    for (const auto& [k, v] : items) {
      args.push_back(blob(k));
      args.push_back(blob(v));
    }
    ref().call(Op::d_update, std::move(args));
  }
  std::size_t size() const { return static_cast<std::size_t>(ref().call(Op::d_size).number); }
  std::vector<K> keys() const { return all<K>(Op::d_keys); }
  std::vector<V> values() const { return all<V>(Op::d_values); }
  std::vector<std::pair<K, V>> items() const {
    auto r = ref().call(Op::d_items);
    std::vector<std::pair<K, V>> out;
    for (std::size_t i = 0; i + 1 < r.results.size(); i += 2) out.emplace_back(unblob<K>(r.results[i]), unblob<V>(r.results[i + 1]));
    return out;
  }
  std::map<K, V> copy() const {
    std::map<K, V> out;
    for (auto& [k, v] : items()) out.insert_or_assign(std::move(k), std::move(v));
    return out;
  }
  void clear() { ref().call(Op::d_clear); }
  /// Atomically replaces d[k] by fn(d[k]) (fn(initial) when absent) in the server, under
  /// the dict's lock, and returns the new value. `fn` must be a plain function V(V).
  /// Throws: what fn threw, as the same standard type (others: RemoteError naming the type), as for pool tasks.
  V update_with(const K& k, V (*fn)(V), const V& initial = V{}) {
    using Fn = V(V);
    auto r = ref().call(Op::d_update_with,
                        {blob(k), blob(initial), blob(detail::code_ref(&detail::manager::update_adapter<V, Fn>)),
                         blob(detail::code_ref(fn))});
    return unblob<V>(r.results.at(0));
  }

 private:
  template <class T>
  std::vector<T> all(Op op) const {
    auto r = ref().call(op);
    std::vector<T> out;
    out.reserve(r.results.size());
    for (const auto& b : r.results) out.push_back(unblob<T>(b));
    return out;
  }
  template <class T>
  static detail::manager::Blob blob(const T& v) { return detail::manager::blob(v); }
  template <class T>
  static T unblob(const detail::manager::Blob& b) { return detail::manager::unblob<T>(b); }
};

/// Python's ListProxy. get/set/insert/pop with an index out of range throw std::out_of_range;
/// remove/index of an absent value throw std::invalid_argument (Python's ValueError).
/// Negative indices count from the end, as in Python.
template <class T>
class ListProxy : public detail::manager::ProxyBase {
  using Op = detail::manager::Op;

 public:
  ListProxy() = default;
  explicit ListProxy(std::shared_ptr<detail::manager::ObjectRef> r) : ProxyBase(std::move(r)) {}

  void append(const T& v) { ref().call(Op::l_append, {blob(v)}); }
  template <class Range>
  void extend(const Range& range) {
    std::vector<detail::manager::Blob> args;
    for (const auto& v : range) args.push_back(blob(T(v)));
    ref().call(Op::l_extend, std::move(args));
  }
  T get(std::int64_t i) const { return unblob(ref().call(Op::l_get, {}, i).results.at(0)); }
  void set(std::int64_t i, const T& v) { ref().call(Op::l_set, {blob(v)}, i); }
  void insert(std::int64_t i, const T& v) { ref().call(Op::l_insert, {blob(v)}, i); }
  T pop() { return unblob(ref().call(Op::l_pop_back).results.at(0)); }
  T pop(std::int64_t i) { return unblob(ref().call(Op::l_pop, {}, i).results.at(0)); }
  void remove(const T& v) { ref().call(Op::l_remove, {blob(v)}); }
  std::size_t index(const T& v) const { return static_cast<std::size_t>(ref().call(Op::l_index, {blob(v)}).number); }
  std::size_t count(const T& v) const { return static_cast<std::size_t>(ref().call(Op::l_count, {blob(v)}).number); }
  std::size_t size() const { return static_cast<std::size_t>(ref().call(Op::l_size).number); }
  std::vector<T> copy() const {
    auto r = ref().call(Op::l_copy);
    std::vector<T> out;
    out.reserve(r.results.size());
    for (const auto& b : r.results) out.push_back(unblob(b));
    return out;
  }
  void clear() { ref().call(Op::l_clear); }

 private:
  static detail::manager::Blob blob(const T& v) { return detail::manager::blob(v); }
  static T unblob(const detail::manager::Blob& b) { return detail::manager::unblob<T>(b); }
};

/// Python's NamespaceProxy: named attributes of any serializable types. get<T> of an absent
/// name throws KeyError; of a name set with another type, SerializationError.
class NamespaceProxy : public detail::manager::ProxyBase {
  using Op = detail::manager::Op;

 public:
  NamespaceProxy() = default;
  explicit NamespaceProxy(std::shared_ptr<detail::manager::ObjectRef> r) : ProxyBase(std::move(r)) {}

  template <class T>
  void set(const std::string& name, const T& value) {
    std::pair<std::string, detail::manager::Blob> tagged{std::string(type_name<T>()), dumps(value)};
    ref().call(Op::d_set, {dumps(name), dumps(tagged)});
  }
  template <class T>
  T get(const std::string& name) const {
    auto r = ref().call(Op::d_get, {dumps(name)});
    auto tagged = detail::manager::unblob<std::pair<std::string, detail::manager::Blob>>(r.results.at(0));
    if (tagged.first != type_name<T>())
      throw SerializationError("Namespace attribute '" + name + "' holds a " + tagged.first + ", not a " +
                               std::string(type_name<T>()));
    return detail::manager::unblob<T>(tagged.second);
  }
  bool contains(const std::string& name) const { return ref().call(Op::d_contains, {dumps(name)}).number != 0; }
  void del(const std::string& name) { ref().call(Op::d_pop, {dumps(name)}); }
};

/// Python's ValueProxy.
template <class T>
class ValueProxy : public detail::manager::ProxyBase {
  using Op = detail::manager::Op;

 public:
  ValueProxy() = default;
  explicit ValueProxy(std::shared_ptr<detail::manager::ObjectRef> r) : ProxyBase(std::move(r)) {}
  T get() const { return detail::manager::unblob<T>(ref().call(Op::v_get).results.at(0)); }
  void set(const T& v) { ref().call(Op::v_set, {dumps(v)}); }
  /// Atomically replaces the value by fn(value) in the server; returns the new value.
  T apply(T (*fn)(T)) {
    using Fn = T(T);
    auto r = ref().call(Op::v_apply, {dumps(detail::code_ref(&detail::manager::update_adapter<T, Fn>)),
                                      dumps(detail::code_ref(fn))});
    return detail::manager::unblob<T>(r.results.at(0));
  }
};

/// Python's ArrayProxy (a fixed-size list).
template <class T>
class ArrayProxy : public detail::manager::ProxyBase {
  using Op = detail::manager::Op;

 public:
  ArrayProxy() = default;
  explicit ArrayProxy(std::shared_ptr<detail::manager::ObjectRef> r) : ProxyBase(std::move(r)) {}
  T get(std::int64_t i) const { return detail::manager::unblob<T>(ref().call(Op::l_get, {}, i).results.at(0)); }
  void set(std::int64_t i, const T& v) { ref().call(Op::l_set, {dumps(v)}, i); }
  std::size_t size() const { return static_cast<std::size_t>(ref().call(Op::l_size).number); }
  std::vector<T> copy() const {
    auto r = ref().call(Op::l_copy);
    std::vector<T> out;
    for (const auto& b : r.results) out.push_back(detail::manager::unblob<T>(b));
    return out;
  }
};

/// Python's queue.Queue proxy (JoinableQueue adds task_done/join). get/put with block false
/// or a timeout throw Empty / Full.
template <class T>
class QueueProxy : public detail::manager::ProxyBase {
  using Op = detail::manager::Op;

 public:
  QueueProxy() = default;
  QueueProxy(std::shared_ptr<detail::manager::ObjectRef> r, bool unbounded) : ProxyBase(std::move(r)), unbounded_(unbounded) {}
  /// On an unbounded queue, one-way (it cannot block or fail): returns once sent, so that a
  /// producer's puts stream to the server without a round trip each.
  void put(const T& v, bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    if (unbounded_) {
      ref().post(Op::q_put, {dumps(v)});
      return;
    }
    ref().call(Op::q_put, {dumps(v)}, 0, detail::manager::to_ns(block, timeout));
  }
  void put_nowait(const T& v) { put(v, false); }
  T get(bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    return detail::manager::unblob<T>(ref().call(Op::q_get, {}, 0, detail::manager::to_ns(block, timeout)).results.at(0));
  }
  T get_nowait() { return get(false); }
  std::size_t qsize() const { return static_cast<std::size_t>(ref().call(Op::q_qsize).number); }
  bool empty() const { return ref().call(Op::q_empty).number != 0; }
  bool full() const { return ref().call(Op::q_full).number != 0; }
  /// JoinableQueue only (a plain Queue refuses with Error).
  void task_done() { ref().call(Op::q_task_done); }
  void join() { ref().call(Op::q_join); }

  template <class Archive>
  void save(Archive& archive) const {
    ProxyBase::save(archive);
    archive(unbounded_);
  }
  template <class Archive>
  void load(Archive& archive) {
    ProxyBase::load(archive);
    archive(unbounded_);
  }

 private:
  bool unbounded_ = false;
};

/// Lock and RLock proxies: owned by the calling thread (each thread talks to the server on
/// its own connection); a client that dies holding one releases it.
class LockProxy : public detail::manager::ProxyBase {
  using Op = detail::manager::Op;

 public:
  LockProxy() = default;
  explicit LockProxy(std::shared_ptr<detail::manager::ObjectRef> r) : ProxyBase(std::move(r)) {}
  bool acquire(bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    return detail::manager::acquire(ref(), block, timeout);
  }
  /// One-way: returns once sent (the next holder can have it one round trip sooner). A
  /// release by a thread that does not hold the lock (Python's RuntimeError) fails the
  /// thread's next call on this manager with Error instead.
  void release() { ref().post(Op::k_release); }
  void lock() { acquire(); }
  void unlock() { release(); }
  bool try_lock() { return acquire(false); }
};

/// Semaphore and BoundedSemaphore proxies (a bounded one refuses a release past its initial
/// value with std::invalid_argument, Python's ValueError).
class SemaphoreProxy : public detail::manager::ProxyBase {
  using Op = detail::manager::Op;

 public:
  SemaphoreProxy() = default;
  explicit SemaphoreProxy(std::shared_ptr<detail::manager::ObjectRef> r) : ProxyBase(std::move(r)) {}
  bool acquire(bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    return detail::manager::acquire(ref(), block, timeout);
  }
  void release(std::int64_t n = 1) { ref().call(Op::k_release, {}, n); }
  std::int64_t get_value() const { return ref().call(Op::k_value).number; }
};

class EventProxy : public detail::manager::ProxyBase {
  using Op = detail::manager::Op;

 public:
  EventProxy() = default;
  explicit EventProxy(std::shared_ptr<detail::manager::ObjectRef> r) : ProxyBase(std::move(r)) {}
  void set() { ref().call(Op::e_set); }
  void clear() { ref().call(Op::e_clear); }
  bool is_set() const { return ref().call(Op::e_is_set).number != 0; }
  bool wait(std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    return ref().call(Op::e_wait, {}, 0, detail::manager::to_ns(timeout)).number != 0;
  }
};

/// A Condition proxy with its own (reentrant) lock.
class ConditionProxy : public detail::manager::ProxyBase {
  using Op = detail::manager::Op;

 public:
  ConditionProxy() = default;
  explicit ConditionProxy(std::shared_ptr<detail::manager::ObjectRef> r) : ProxyBase(std::move(r)) {}
  bool acquire(bool block = true, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    return detail::manager::acquire(ref(), block, timeout);
  }
  void release() { ref().call(Op::k_release); }
  /// Requires the lock held; releases it, waits for a notify (or the timeout), takes it back.
  bool wait(std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    return ref().call(Op::c_wait, {}, 0, detail::manager::to_ns(timeout)).number != 0;
  }
  /// Python's wait_for: requires the lock held; waits until predicate() (run here, with the
  /// lock held, first before any wait) is true or the timeout passes; returns its last value.
  template <class Predicate>
  bool wait_for(Predicate predicate, std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    const auto deadline = timeout ? std::optional(std::chrono::steady_clock::now() + *timeout) : std::nullopt;
    bool result = predicate();
    while (!result) {
      std::optional<std::chrono::nanoseconds> left;
      if (deadline) {
        left = *deadline - std::chrono::steady_clock::now();
        if (*left <= std::chrono::nanoseconds::zero()) break;
      }
      wait(left);
      result = predicate();
    }
    return result;
  }
  void notify(std::int64_t n = 1) { ref().call(Op::c_notify, {}, n); }
  void notify_all() { ref().call(Op::c_notify, {}, -1); }
};

/// A Barrier proxy; wait() returns the arrival index, or throws BrokenBarrierError.
class BarrierProxy : public detail::manager::ProxyBase {
  using Op = detail::manager::Op;

 public:
  BarrierProxy() = default;
  explicit BarrierProxy(std::shared_ptr<detail::manager::ObjectRef> r) : ProxyBase(std::move(r)) {}
  std::size_t wait(std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    return static_cast<std::size_t>(ref().call(Op::b_wait, {}, 0, detail::manager::to_ns(timeout)).number);
  }
  void abort() { ref().call(Op::b_abort); }
  void reset() { ref().call(Op::b_reset); }
  std::size_t parties() const { return static_cast<std::size_t>(ref().call(Op::b_parties).number); }
  std::size_t n_waiting() const { return static_cast<std::size_t>(ref().call(Op::b_n_waiting).number); }
  bool broken() const { return ref().call(Op::b_broken).number != 0; }
};

struct ManagerOptions {
  /// Where the server listens; nullopt: a fresh abstract Unix socket.
  std::optional<Address> address = std::nullopt;
  /// The key; nullopt: 32 random bytes.
  std::optional<std::string> authkey = std::nullopt;
  /// The start method for the server process (nullopt: the current one).
  std::optional<Context> context = std::nullopt;
};

/// Python's SyncManager, started: the constructor starts the server process (a child that
/// dies with this process, SIGKILL included) and the destructor shuts it down. Not copyable.
class Manager {
 public:
  /// Throws: ProcessError / OSError when the server cannot start or bind its address.
  explicit Manager(ManagerOptions options = {});
  ~Manager();
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  template <class K, class V>
  DictProxy<K, V> dict() { return DictProxy<K, V>(create(detail::manager::Kind::dict)); }
  template <class T>
  ListProxy<T> list() { return ListProxy<T>(create(detail::manager::Kind::list)); }
  NamespaceProxy Namespace() { return NamespaceProxy(create(detail::manager::Kind::namespace_)); }
  template <class T>
  ValueProxy<T> Value(const T& initial = T{}) {
    return ValueProxy<T>(create(detail::manager::Kind::value, {dumps(initial)}));
  }
  template <class T>
  ArrayProxy<T> Array(std::size_t n, const T& fill = T{}) {
    return ArrayProxy<T>(create(detail::manager::Kind::array, {dumps(fill)}, static_cast<std::int64_t>(n)));
  }
  /// Python's `m.Array(typecode, sequence)`: an array holding `items`, in order.
  template <class T, std::ranges::input_range R>
    requires std::convertible_to<std::ranges::range_reference_t<R>, T>
  ArrayProxy<T> Array(const R& items) {
    std::vector<detail::manager::Blob> args;
    for (auto&& item : items) args.push_back(dumps(static_cast<T>(item)));
    const auto n = static_cast<std::int64_t>(args.size());
    return ArrayProxy<T>(create(detail::manager::Kind::array, std::move(args), n));
  }
  template <class T>
  ArrayProxy<T> Array(std::initializer_list<T> items) {
    return Array<T, std::initializer_list<T>>(items);
  }
  template <class T>
  QueueProxy<T> Queue(std::size_t maxsize = 0) {
    return QueueProxy<T>(create(detail::manager::Kind::queue, {}, static_cast<std::int64_t>(maxsize)), maxsize == 0);
  }
  template <class T>
  QueueProxy<T> JoinableQueue(std::size_t maxsize = 0) {
    return QueueProxy<T>(create(detail::manager::Kind::joinable_queue, {}, static_cast<std::int64_t>(maxsize)), maxsize == 0);
  }
  LockProxy Lock() { return LockProxy(create(detail::manager::Kind::lock)); }
  LockProxy RLock() { return LockProxy(create(detail::manager::Kind::rlock)); }
  SemaphoreProxy Semaphore(std::int64_t value = 1) { return SemaphoreProxy(create(detail::manager::Kind::semaphore, {}, value)); }
  SemaphoreProxy BoundedSemaphore(std::int64_t value = 1) {
    return SemaphoreProxy(create(detail::manager::Kind::bounded_semaphore, {}, value));
  }
  EventProxy Event() { return EventProxy(create(detail::manager::Kind::event)); }
  ConditionProxy Condition() { return ConditionProxy(create(detail::manager::Kind::condition)); }
  BarrierProxy Barrier(std::int64_t parties) { return BarrierProxy(create(detail::manager::Kind::barrier, {}, parties)); }

  /// The server's address (for a client in another program: with authkey()).
  const Address& address() const { return endpoint_.address; }
  const std::optional<std::string>& authkey() const { return endpoint_.authkey; }
  /// The server process.
  Process& process() { return *server_; }
  /// Stops the server (idempotent); proxies then throw EOFError.
  void shutdown();

 private:
  std::shared_ptr<detail::manager::ObjectRef> create(detail::manager::Kind kind, std::vector<detail::manager::Blob> args = {},
                                                    std::int64_t number = 0);
  detail::manager::Endpoint endpoint_;
  std::optional<Process> server_;
  bool running_ = false;
};

namespace detail::manager {
/// The server process's body (a plain function, so that spawn can name it).
void server_main(Connection ready, std::uint8_t kind, std::string name, std::uint16_t port,
                 std::optional<std::string> authkey);
Address address_of(std::uint8_t kind, const std::string& name, std::uint16_t port);
std::shared_ptr<ObjectRef> create_object(const Endpoint& endpoint, Kind kind, std::vector<Blob> args, std::int64_t number);
void request_shutdown(const Endpoint& endpoint);
/// Closes this thread's and this process's connections to `endpoint` (its server is gone).
void forget(const Endpoint& endpoint) noexcept;
/// Serves on `listener` until a shutdown request; returns once every connection ended.
void serve(Listener& listener, const ServerOptions& options, const Registry* registry = nullptr);
}  // namespace detail::manager

}  // namespace mproc
