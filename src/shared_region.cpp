#include "mproc/detail/shared_region.hpp"

#include "mproc/error.hpp"
#include "sys/shm.hpp"

namespace mproc::detail {

std::shared_ptr<std::byte> allocate_shared_region(std::size_t bytes) {
  sys::SharedMapping mapping;
  if (int rc = sys::map_anonymous_shared(bytes, mapping); rc < 0) throw OSError(-rc, "mmap of shared memory");
  // Aliasing shared_ptr: the control block owns the mapping (unmapped with the last copy),
  // the pointer is its first byte. Each process unmaps only its own view: a forked child's
  // copies never touch the parent's.
  auto owner = std::make_shared<sys::SharedMapping>(std::move(mapping));
  return std::shared_ptr<std::byte>(owner, static_cast<std::byte*>(owner->get()));
}

}  // namespace mproc::detail
