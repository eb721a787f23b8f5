#include "mproc/context.hpp"

#include <mutex>
#include <stdexcept>

#include "mproc/error.hpp"
#include "process/start_method.hpp"

namespace mproc {

namespace {

using detail::StartMethod;

constexpr const char* kNames[] = {"fork", "spawn", "forkserver"};

StartMethod parse(std::string_view name) {
  for (int i = 0; i < 3; ++i)
    if (name == kNames[i]) return static_cast<StartMethod>(i);
  throw std::invalid_argument("mproc: cannot find context for '" + std::string(name) +
                              "' (the start methods are 'fork', 'spawn' and 'forkserver')");
}

// Python's DefaultContext: unset until set_start_method() or until someone asks (which
// fixes the default).
struct CurrentMethod {
  std::mutex mutex;
  std::optional<StartMethod> method;
};
CurrentMethod& current() {
  static auto* state = new CurrentMethod;  // leaked: used by children started at exit
  return *state;
}

}  // namespace

std::string Context::get_start_method() const { return kNames[static_cast<int>(method_)]; }

std::vector<std::string> get_all_start_methods() { return {kNames[0], kNames[1], kNames[2]}; }

std::string get_start_method() { return kNames[static_cast<int>(detail::current_start_method())]; }

std::optional<std::string> get_start_method(bool allow_none) {
  if (!allow_none) return get_start_method();
  auto& state = current();
  std::lock_guard lock(state.mutex);
  if (!state.method) return std::nullopt;
  return kNames[static_cast<int>(*state.method)];
}

void set_start_method(std::string_view method, bool force) {
  StartMethod parsed = parse(method);
  auto& state = current();
  std::lock_guard lock(state.mutex);
  if (state.method && !force) throw Error("mproc: context has already been set");
  state.method = parsed;
}

Context get_context(std::optional<std::string_view> method) {
  return Context(method ? parse(*method) : detail::current_start_method());
}

namespace detail {

StartMethod current_start_method() {
  auto& state = current();
  std::lock_guard lock(state.mutex);
  if (!state.method) state.method = StartMethod::fork;
  return *state.method;
}

StartMethod start_method_of(const std::optional<Context>& context) {
  return context ? context->method() : current_start_method();
}

const char* start_method_name(StartMethod method) noexcept { return kNames[static_cast<int>(method)]; }

std::string worker_name_prefix(StartMethod method, const char* kind) {
  constexpr const char* kPrefixes[] = {"Fork", "Spawn", "ForkServer"};
  return std::string(kPrefixes[static_cast<int>(method)]) + kind;
}

}  // namespace detail
}  // namespace mproc
