// demangle — readable C++ type names for error reports that cross process boundaries.
#pragma once

#include <string>

namespace mproc::detail {

/// The demangled form of a typeid name ("std::out_of_range"), or the input if it cannot be
/// demangled.
std::string demangle(const char* mangled);

/// The demangled type of the exception being handled, or "unknown exception".
std::string current_exception_type_name();

}  // namespace mproc::detail
