#include "mproc/detail/task.hpp"

#include <cstdio>
#include <memory>
#include <new>
#include <stdexcept>
#include <typeinfo>

#include "mproc/async_result.hpp"
#include "mproc/error.hpp"
#include "demangle.hpp"

namespace mproc::detail {

namespace {


// The standard exception types a caller gets back as themselves, by their demangled name.
template <class E>
std::exception_ptr make_standard(const std::string& message) {
  return std::make_exception_ptr(E(message));
}

using Factory = std::exception_ptr (*)(const std::string&);
struct StandardType {
  const char* name;
  Factory make;
};

const StandardType kStandardTypes[] = {
    {"std::exception", [](const std::string&) { return std::make_exception_ptr(std::exception()); }},
    {"std::logic_error", make_standard<std::logic_error>},
    {"std::invalid_argument", make_standard<std::invalid_argument>},
    {"std::domain_error", make_standard<std::domain_error>},
    {"std::length_error", make_standard<std::length_error>},
    {"std::out_of_range", make_standard<std::out_of_range>},
    {"std::runtime_error", make_standard<std::runtime_error>},
    {"std::range_error", make_standard<std::range_error>},
    {"std::overflow_error", make_standard<std::overflow_error>},
    {"std::underflow_error", make_standard<std::underflow_error>},
    {"std::bad_alloc", [](const std::string&) { return std::make_exception_ptr(std::bad_alloc()); }},
};

}  // namespace

RemoteFailure describe_current_exception(std::int32_t pid) {
  RemoteFailure failure;
  failure.pid = pid;
  try {
    throw;
  } catch (const std::exception& error) {
    failure.type_name = demangle(typeid(error).name());
    failure.message = error.what();
  } catch (...) {
    failure.type_name = current_exception_type_name();
  }
  return failure;
}

std::exception_ptr rebuild_exception(const RemoteFailure& failure) {
  for (const auto& standard : kStandardTypes)
    if (failure.type_name == standard.name) return standard.make(failure.message);
  return std::make_exception_ptr(RemoteError(failure.type_name, failure.message, failure.pid));
}

}  // namespace mproc::detail
