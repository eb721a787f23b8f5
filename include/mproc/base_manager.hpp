// mproc/base_manager.hpp — multiprocessing.managers.BaseManager: serve objects of your own
// types to clients in other processes or programs, on this machine or another.
//
//   std::shared_ptr<Counter> make_counter() { return std::make_shared<Counter>(); }
//
//   mproc::BaseManager mgr(mproc::Address::tcp("127.0.0.1", 50000), std::string("key"));
//   mgr.register_type<Counter>("Counter", &make_counter, &Counter::add, &Counter::total);
//   mgr.get_server().serve_forever();                      // the server program
//
//   mproc::BaseManager mgr(mproc::Address::tcp("127.0.0.1", 50000), std::string("key"));
//   mgr.register_type<Counter>("Counter", &make_counter, &Counter::add, &Counter::total);
//   mgr.connect();                                         // a client program
//   auto c = mgr.create<Counter>("Counter");
//   c.call(&Counter::add, 5);
//   int n = c.call(&Counter::total);
//
// As in Python, a client registers the same typeids (with the same methods, in the same
// order) as the server: a method is named on the wire by its position in the registration.
// The server refuses any other; a method's exception reaches the caller with its type kept
// (the standard exceptions; others as RemoteError naming the type), as for pool tasks.
// Methods of one object run concurrently when several clients call them, as in Python's
// server: a type shared by several clients must be thread-safe.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>

#include "mproc/listener.hpp"
#include "mproc/managers.hpp"

namespace mproc {

namespace detail::manager {

template <class T, class M>
struct MethodTraits;
template <class T, class R, class... A>
struct MethodTraits<T, R (T::*)(A...)> {
  using result = R;
  using arguments = std::tuple<std::decay_t<A>...>;
};
template <class T, class R, class... A>
struct MethodTraits<T, R (T::*)(A...) const> {
  using result = R;
  using arguments = std::tuple<std::decay_t<A>...>;
};

template <class T, class M>
std::function<Blob(void*, const Blob&)> make_invoker(M method) {
  using Traits = MethodTraits<T, M>;
  return [method](void* object, const Blob& encoded) -> Blob {
    auto arguments = loads<typename Traits::arguments>(std::span<const std::byte>(encoded));
    auto invoke = [&](auto&&... a) -> decltype(auto) { return (static_cast<T*>(object)->*method)(std::move(a)...); };
    if constexpr (std::is_void_v<typename Traits::result>) {
      std::apply(invoke, std::move(arguments));
      return {};
    } else {
      Blob out;
      // Reserved first: GCC 12 warns (-Wstringop-overflow, a false positive) about growing an
      // empty vector<byte> when this is inlined into a small result's encoding.
      out.reserve(64);
      dumps(std::decay_t<typename Traits::result>(std::apply(invoke, std::move(arguments))), out);
      return out;
    }
  };
}

/// This process's registrations (a client finds a method's index here).
Registry& process_registry();
void add_to_process_registry(const std::string& type_id, const Registration& registration);
const Registration& find_registration(const std::string& type_id);

}  // namespace detail::manager

/// A proxy to an object of a registered type T.
template <class T>
class Proxy : public detail::manager::ProxyBase {
 public:
  Proxy() = default;
  Proxy(std::shared_ptr<detail::manager::ObjectRef> r, std::string type_id) : ProxyBase(std::move(r)), type_id_(std::move(type_id)) {}

  /// Calls `method` (one registered for this proxy's typeid) in the server with `args`;
  /// returns its result. Throws: Error (a method not registered: refused), what the method
  /// threw (same standard type; others RemoteError), EOFError (the server is gone).
  template <class M, class... Args>
  auto call(M method, Args&&... args) {
    using Traits = detail::manager::MethodTraits<T, M>;
    const auto& registration = detail::manager::find_registration(type_id_);
    std::int64_t index = registration.index_of(typeid(M), &method);
    if (index < 0) throw Error("this method is not registered (exposed) for typeid '" + type_id_ + "'");
    typename Traits::arguments arguments(std::forward<Args>(args)...);
    auto reply = ref().call(detail::manager::Op::call_method, {dumps(arguments)}, index);
    if constexpr (!std::is_void_v<typename Traits::result>)
      return loads<std::decay_t<typename Traits::result>>(std::span<const std::byte>(reply.results.at(0)));
  }
  const std::string& type_id() const noexcept { return type_id_; }

  template <class Archive>
  void save(Archive& archive) const {
    ProxyBase::save(archive);
    archive(type_id_);
  }
  template <class Archive>
  void load(Archive& archive) {
    ProxyBase::load(archive);
    archive(type_id_);
  }

 private:
  std::string type_id_;
};

/// Python's BaseManager. Not copyable.
class BaseManager {
 public:
  /// Where the server listens (TCP port 0: the kernel picks; see get_server().address()) and
  /// the key (nullopt: no authentication — only on a trusted network; see managers.hpp).
  BaseManager(Address address, std::optional<std::string> authkey);
  ~BaseManager();
  BaseManager(const BaseManager&) = delete;
  BaseManager& operator=(const BaseManager&) = delete;

  /// Registers `type_id`: `factory` makes an object for each create(); the listed member
  /// functions are all that clients may call. Call it before start()/get_server(), and in
  /// clients (with the same methods in the same order).
  template <class T, class... Methods>
  void register_type(const std::string& type_id, std::shared_ptr<T> (*factory)(), Methods... methods) {
    detail::manager::Registration r;
    r.factory = [factory]() -> std::shared_ptr<void> { return factory(); };
    (r.methods.push_back(detail::manager::make_invoker<T>(methods)), ...);
    r.index_of = [methods...](const std::type_info& type, const void* member) -> std::int64_t {
      std::int64_t index = 0, found = -1;
      auto check = [&](auto m) {
        if (found < 0 && typeid(m) == type && *static_cast<const decltype(m)*>(member) == m) found = index;
        ++index;
      };
      (check(methods), ...);
      return found;
    };
    registry_[type_id] = r;
    detail::manager::add_to_process_registry(type_id, r);
  }

  /// The server, in this process: get_server().serve_forever() serves until a client's
  /// shutdown() (Python's server.serve_forever()).
  class Server {
   public:
    const Address& address() const { return listener_->address(); }
    void serve_forever();

   private:
    friend class BaseManager;
    Server(std::unique_ptr<Listener> listener, const detail::manager::Registry* registry)
        : listener_(std::move(listener)), registry_(registry) {}
    std::unique_ptr<Listener> listener_;
    const detail::manager::Registry* registry_;
  };
  /// Binds the address now. Throws OSError (in use, ...).
  Server get_server();

  /// Starts the server in a child process (daemonic: it dies with this process, SIGKILL
  /// included). The child is forked, whatever the start method, because the registrations
  /// (plain functions and member pointers kept in this process) go with it.
  void start();
  /// Connects to a server already running at the address. Throws EOFError (none there),
  /// AuthenticationError (wrong key).
  void connect();
  /// Creates an object of a registered type in the server.
  template <class T>
  Proxy<T> create(const std::string& type_id) {
    return Proxy<T>(detail::manager::create_object(endpoint_, detail::manager::Kind::custom, {dumps(type_id)}, 0), type_id);
  }
  /// Asks the server to stop (a server started by start() is then joined). Idempotent.
  void shutdown();
  const Address& address() const { return endpoint_.address; }

 private:
  detail::manager::Endpoint endpoint_;
  detail::manager::Registry registry_;
  std::optional<Process> server_;
  bool connected_ = false;
};

}  // namespace mproc
