// mproc/detail/code_identity.hpp — naming a function so that another copy of the program
// can run it: the module it lives in (identified by its GNU build id) and its offset from
// the module's load address. Valid in a forked child, an exec'd copy of the program
// (spawn, forkserver), an MPI rank on another host: wherever the same build of the same
// module is loaded, at whatever address ASLR put it.
#pragma once

#include <cstdint>
#include <type_traits>

namespace mproc::detail {

/// A code address on the wire.
struct CodeRef {
  /// The module's identity: a hash of its build id (of its file's identity, for a module
  /// built without one). 0 names nothing.
  std::uint64_t module = 0;
  /// The address minus the module's load bias (the absolute address in a module loaded
  /// where it was linked, such as a position-dependent executable).
  std::uint64_t offset = 0;

  friend bool operator==(const CodeRef&, const CodeRef&) = default;
};
static_assert(std::is_trivially_copyable_v<CodeRef> && sizeof(CodeRef) == 16, "CodeRef travels as raw bytes");

/// The wire name of `address`, which must lie in the executable code of a loaded module.
/// Throws SerializationError otherwise. Thread-safe; a few nanoseconds when the address was
/// named before on this thread.
CodeRef code_ref_of(const void* address);

/// The address `ref` names in this process. Throws SerializationError, saying why, when no
/// loaded module has that identity or the offset is not in its executable code: a worker
/// never jumps to an address that is not the same code. Thread-safe.
const void* resolve_code(const CodeRef& ref);

template <class Fn>
CodeRef code_ref(Fn* function) {
  static_assert(std::is_function_v<Fn>, "only functions are named by CodeRef");
  // Converting a function pointer to void* is conditionally supported; POSIX (dlsym) and
  // every compiler mproc supports define it.
  return code_ref_of(reinterpret_cast<const void*>(function));
}

template <class Fn>
Fn* resolve(const CodeRef& ref) {
  static_assert(std::is_function_v<Fn>, "only functions are named by CodeRef");
  return reinterpret_cast<Fn*>(const_cast<void*>(resolve_code(ref)));
}

}  // namespace mproc::detail
