// mproc/detail/manager_protocol.hpp — the requests a manager's client sends its server, the
// replies it gets, and the client's reference to one shared object.
//
// The server is type-erased: it holds encoded values (Blob), compares keys and list items
// by their encodings, and runs typed code only through named functions (CodeRef) that the
// client names and the server resolves in its own copy of the program (the mechanism spawn
// uses), for atomic updates. One request, one reply, in order, on a connection of its own
// per client thread (a blocking call, such as Queue::get or Lock::acquire, holds only that
// thread's connection, as Python's proxies do).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <typeinfo>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <sys/types.h>
#include <vector>

#include "mproc/address.hpp"
#include "mproc/codec.hpp"
#include "mproc/detail/code_identity.hpp"

namespace mproc::detail::manager {

using Blob = std::vector<std::byte>;

/// The kinds of object a SyncManager serves.
enum class Kind : std::uint8_t { dict, list, namespace_, value, array, queue, joinable_queue, lock, rlock,
                                 semaphore, bounded_semaphore, event, condition, barrier, custom };

/// Operations. Arguments and results are Blobs; counts and indices travel in `number`.
enum class Op : std::uint16_t {
  // session and registry
  hello, create, incref, decref, pin, shutdown,
  // dict and Namespace (keys and values encoded)
  d_set, d_get, d_get_optional, d_contains, d_pop, d_setdefault, d_update, d_size, d_keys, d_values,
  d_items, d_clear, d_update_with,
  // list and Array
  l_append, l_extend, l_get, l_set, l_insert, l_pop, l_pop_back, l_remove, l_index, l_count, l_size,
  l_copy, l_clear,
  // Value
  v_get, v_set, v_apply,
  // Queue, JoinableQueue
  q_put, q_get, q_qsize, q_empty, q_full, q_task_done, q_join,
  // Lock, RLock, Semaphore, BoundedSemaphore, Condition's lock
  k_acquire, k_release, k_value,
  // Event
  e_set, e_clear, e_is_set, e_wait,
  // Condition
  c_wait, c_notify,
  // Barrier
  b_wait, b_abort, b_reset, b_parties, b_n_waiting, b_broken,
  // BaseManager's registered types: `number` is the method's index in its registration
  call_method,
};

/// How a request failed; the client rethrows the matching mproc / std exception.
enum class Status : std::uint8_t { ok, key_error, out_of_range, value_error, empty, full, timeout,
                                   broken_barrier, runtime_error, error, refused, gone };

struct Request {
  std::uint64_t id = 0;        // the object (0: the registry)
  Op op = Op::hello;
  std::int64_t number = 0;     // an index, a count, a Kind, a maxsize
  std::int64_t timeout_ns = -1;  // blocking operations: -1 waits for ever, 0 does not block
  /// One-way: the server sends no reply (pipelining). A failure is kept and answers the
  /// connection's next two-way request instead of running it.
  bool one_way = false;
  std::vector<Blob> args;
  template <class A>
  void serialize(A& a) { a(id, op, number, timeout_ns, one_way, args); }
};

struct Reply {
  Status status = Status::ok;
  std::int64_t number = 0;
  std::string message;         // what failed, for a status other than ok
  std::vector<Blob> results;
  template <class A>
  void serialize(A& a) { a(status, number, message, results); }
};

/// The signature of the typed adapters that run an atomic update in the server: `fn` names
/// the user's plain function, `old` is the current encoded value (nullptr: absent, use
/// `initial`); returns the new encoded value.
using UpdateAdapter = Blob(const CodeRef& fn, const Blob* old, const Blob& initial);

template <class T, class Fn>
Blob update_adapter(const CodeRef& fn, const Blob* old, const Blob& initial) {
  T value = loads<T>(old != nullptr ? std::span<const std::byte>(*old) : std::span<const std::byte>(initial));
  T updated = resolve<Fn>(fn)(std::move(value));
  return dumps(updated);
}

/// Where a manager listens and the key to it: what a proxy needs to reconnect anywhere.
struct Endpoint {
  Address address = Address::unnamed_unix();
  std::optional<std::string> authkey;
};

void save_endpoint(Encoder& encoder, const Endpoint& endpoint);
Endpoint load_endpoint(Decoder& decoder);

/// Sends `request` on this thread's connection to `endpoint` and returns the reply; a
/// status other than ok is thrown as its exception.
/// Throws: EOFError (the server is gone; never a hang), AuthenticationError, OSError.
Reply call(const Endpoint& endpoint, const Request& request);
/// The same, with `key` = channel_key(endpoint) computed once by the caller.
Reply call(const Endpoint& endpoint, const std::string& key, const Request& request);
/// Sends a one-way `request` on this thread's connection without waiting for a reply.
void post(const Endpoint& endpoint, const std::string& key, const Request& request);
/// What names a connection to `endpoint` among a thread's connections (address and key).
std::string channel_key(const Endpoint& endpoint);

/// One process's reference to one object in a manager: increments the server's count when
/// first used in a process (after a fork, after decoding), decrements it when the last
/// proxy copy in that process goes.
class ObjectRef {
 public:
  /// A reference to an object just created by this process (already counted once for it).
  ObjectRef(Endpoint endpoint, std::uint64_t id, bool counted);
  ~ObjectRef();
  ObjectRef(const ObjectRef&) = delete;
  ObjectRef& operator=(const ObjectRef&) = delete;

  Reply call(Op op, std::vector<Blob> args = {}, std::int64_t number = 0, std::int64_t timeout_ns = -1);
  /// A one-way call: returns once sent (see Request::one_way).
  void post(Op op, std::vector<Blob> args = {}, std::int64_t number = 0);
  const Endpoint& endpoint() const noexcept { return endpoint_; }
  std::uint64_t id() const noexcept { return id_; }
  /// Keeps the object alive until the manager shuts down: a proxy that was encoded may be
  /// decoded any time later, anywhere (a Process argument, an item in another proxy).
  void pin();

 private:
  void adopt();
  /// A request on this object, counted in this process first (adopt()).
  Request request(Op op, std::vector<Blob> args, std::int64_t number);
  Endpoint endpoint_;
  std::string channel_key_;  // channel_key(endpoint_): computed once, not at every call
  std::uint64_t id_;
  std::atomic<pid_t> counted_in_{0};
  std::atomic<bool> pinned_{false};
};

/// The base of every proxy: a shared ObjectRef, encoded as endpoint + id.
class ProxyBase {
 public:
  ProxyBase() = default;
  explicit ProxyBase(std::shared_ptr<ObjectRef> ref) : ref_(std::move(ref)) {}
  std::uint64_t id() const { return ref().id(); }
  const Endpoint& endpoint() const { return ref().endpoint(); }

  template <class Archive>
  void save(Archive& archive) const {
    ref().pin();
    save_proxy(archive.encoder(), *ref_);
  }
  template <class Archive>
  void load(Archive& archive) {
    ref_ = load_proxy(archive.decoder());
  }

 protected:
  ObjectRef& ref() const;
  std::shared_ptr<ObjectRef> ref_;

 private:
  static void save_proxy(Encoder& encoder, const ObjectRef& ref);
  static std::shared_ptr<ObjectRef> load_proxy(Decoder& decoder);
};

/// One type registered with a BaseManager: how the server makes one, and the methods
/// clients may call (Python's `exposed`), each decoding its arguments and encoding its result.
struct Registration {
  std::function<std::shared_ptr<void>()> factory;
  std::vector<std::function<Blob(void* object, const Blob& arguments)>> methods;
  /// Client side: finds a member pointer's index (-1: not registered).
  std::function<std::int64_t(const std::type_info& member_type, const void* member)> index_of;
};
using Registry = std::map<std::string, Registration, std::less<>>;

struct ServerOptions {
  std::size_t max_connections = 1024;
  std::uint64_t max_message_size = 256ull << 20;
};

}  // namespace mproc::detail::manager
