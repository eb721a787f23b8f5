// mproc/detail/shared_handle.hpp — what the codec needs to know about the handles whose state
// lives in shared memory (Queue, Lock and the other primitives, Value/Array): that they are
// one, and how to make an empty one to load into. Not part of the public API.
#pragma once

#include <type_traits>

namespace mproc::detail {

/// Tag of the constructor that makes a handle to nothing yet, to be loaded into. Decoding
/// must not default-construct a Lock or a Queue: that would make (and at once drop) a new
/// shared object, and some of these types have no default constructor.
struct UnloadedHandle {
  explicit UnloadedHandle() = default;
};

/// Whether T is a handle to state shared by descriptor (it declares the member type
/// mproc_shared_by_descriptor). Such a value crosses only in a child's start message: as a
/// Process argument or a pool's initargs under spawn and forkserver, never as a pool task's
/// argument (checked at compile time where the task's parameter types are known) nor through
/// a Pipe or a Queue (refused at run time: export_fd throws SerializationError).
template <class T>
inline constexpr bool shared_by_descriptor = requires { typename std::remove_cv_t<T>::mproc_shared_by_descriptor; };

/// The one way into the private UnloadedHandle constructors (each handle befriends it).
struct HandleAccess {
  template <class T>
  static T unloaded() {
    return T(UnloadedHandle{});
  }
};

}  // namespace mproc::detail
