// mproc/detail/shared_region.hpp — anonymous shared memory for the shared-state types
// (synchronize.hpp, sharedctypes.hpp). Not part of the public API.
#pragma once

#include <cstddef>
#include <memory>

namespace mproc::detail {

/// `bytes` (> 0) of zero-filled MAP_SHARED | MAP_ANONYMOUS memory, page-aligned: shared with
/// every child forked after this call, never visible in /dev/shm, unmapped in this process
/// when the last shared_ptr copy goes. Throws OSError (ENOMEM) when it cannot be mapped.
std::shared_ptr<std::byte> allocate_shared_region(std::size_t bytes);

}  // namespace mproc::detail
