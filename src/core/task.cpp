#include "mproc/detail/task.hpp"

#include <cstdio>
#include <memory>
#include <new>
#include <stdexcept>
#include <any>
#include <functional>
#include <future>
#include <ios>
#include <optional>
#include <system_error>
#include <typeinfo>
#include <variant>

#include "mproc/async_result.hpp"
#include "mproc/error.hpp"
#include "core/demangle.hpp"

namespace mproc::detail {

namespace {


// The exception types a caller gets back as themselves, by their demangled name: the
// standard library's, and mproc's own (a task may well time out on a Queue or a Lock).
template <class E>
std::exception_ptr make_with_message(const RemoteFailure& failure) {
  return std::make_exception_ptr(E(failure.message));
}
template <class E>
std::exception_ptr make_default(const RemoteFailure&) {
  return std::make_exception_ptr(E());
}

// A system_error's what() is "<argument>: <code's message>"; the argument is what its
// constructor takes back.
std::string system_error_argument(const RemoteFailure& failure, const std::error_code& code) {
  const std::string suffix = ": " + code.message();
  const std::string& what = failure.message;
  if (what.size() >= suffix.size() && what.compare(what.size() - suffix.size(), suffix.size(), suffix) == 0)
    return what.substr(0, what.size() - suffix.size());
  return what;
}

const std::error_category* category_named(const std::string& name) {
  for (const std::error_category* category :
       {&std::generic_category(), &std::system_category(), &std::iostream_category(), &std::future_category()})
    if (name == category->name()) return category;
  return nullptr;
}

std::exception_ptr make_system_error(const RemoteFailure& failure) {
  const std::error_category* category = category_named(failure.category);
  if (category == nullptr) return nullptr;
  std::error_code code(failure.code, *category);
  return std::make_exception_ptr(std::system_error(code, system_error_argument(failure, code)));
}
std::exception_ptr make_ios_failure(const RemoteFailure& failure) {
  const std::error_category* category = category_named(failure.category);
  if (category == nullptr) return nullptr;
  std::error_code code(failure.code, *category);
  return std::make_exception_ptr(std::ios_base::failure(system_error_argument(failure, code), code));
}
std::exception_ptr make_future_error(const RemoteFailure& failure) {
  if (failure.category != std::future_category().name()) return nullptr;
  return std::make_exception_ptr(std::future_error(static_cast<std::future_errc>(failure.code)));
}

using Factory = std::exception_ptr (*)(const RemoteFailure&);
struct KnownType {
  const char* name;
  Factory make;
};

const KnownType kKnownTypes[] = {
    {"std::exception", make_default<std::exception>},
    {"std::logic_error", make_with_message<std::logic_error>},
    {"std::invalid_argument", make_with_message<std::invalid_argument>},
    {"std::domain_error", make_with_message<std::domain_error>},
    {"std::length_error", make_with_message<std::length_error>},
    {"std::out_of_range", make_with_message<std::out_of_range>},
    {"std::runtime_error", make_with_message<std::runtime_error>},
    {"std::range_error", make_with_message<std::range_error>},
    {"std::overflow_error", make_with_message<std::overflow_error>},
    {"std::underflow_error", make_with_message<std::underflow_error>},
    {"std::bad_alloc", make_default<std::bad_alloc>},
    {"std::bad_array_new_length", make_default<std::bad_array_new_length>},
    {"std::bad_cast", make_default<std::bad_cast>},
    {"std::bad_typeid", make_default<std::bad_typeid>},
    {"std::bad_optional_access", make_default<std::bad_optional_access>},
    {"std::bad_variant_access", make_default<std::bad_variant_access>},
    {"std::bad_any_cast", make_default<std::bad_any_cast>},
    {"std::bad_function_call", make_default<std::bad_function_call>},
    {"std::bad_weak_ptr", make_default<std::bad_weak_ptr>},
    {"std::system_error", make_system_error},
    {"std::ios_base::failure", make_ios_failure},
    {"std::ios_base::failure[abi:cxx11]", make_ios_failure},  // libstdc++'s C++11 ABI
    {"std::future_error", make_future_error},
    {"mproc::Error", make_with_message<Error>},
    {"mproc::ProcessError", make_with_message<ProcessError>},
    {"mproc::TimeoutError", make_with_message<TimeoutError>},
    {"mproc::EOFError", make_with_message<EOFError>},
    {"mproc::SerializationError", make_with_message<SerializationError>},
    {"mproc::Empty", make_with_message<Empty>},
    {"mproc::Full", make_with_message<Full>},
    {"mproc::BrokenBarrierError", make_with_message<BrokenBarrierError>},
    {"mproc::CancelledError", make_with_message<CancelledError>},
    {"mproc::InvalidStateError", make_with_message<InvalidStateError>},
    {"mproc::BrokenExecutor", make_with_message<BrokenExecutor>},
};

}  // namespace

RemoteFailure describe_current_exception(std::int32_t pid) {
  RemoteFailure failure;
  failure.pid = pid;
  // Exceptions that carry an error_code need it to be rebuilt as themselves. std::future_error
  // is a logic_error, not a system_error: it needs its own clause before std::exception.
  auto keep_code = [&failure](const std::exception& error, const std::error_code& code) {
    failure.type_name = demangle(typeid(error).name());
    failure.message = error.what();
    failure.code = code.value();
    failure.category = code.category().name();
  };
  try {
    throw;
  } catch (const std::system_error& error) {  // also ios_base::failure
    keep_code(error, error.code());
  } catch (const std::future_error& error) {
    keep_code(error, error.code());
  } catch (const std::exception& error) {
    failure.type_name = demangle(typeid(error).name());
    failure.message = error.what();
  } catch (...) {
    failure.type_name = current_exception_type_name();
  }
  return failure;
}

std::exception_ptr rebuild_exception(const RemoteFailure& failure) {
  for (const auto& known : kKnownTypes)
    if (failure.type_name == known.name)
      if (std::exception_ptr rebuilt = known.make(failure)) return rebuilt;
  return std::make_exception_ptr(RemoteError(failure.type_name, failure.message, failure.pid));
}

}  // namespace mproc::detail
