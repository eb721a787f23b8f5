#include "mproc/detail/shared_region.hpp"

#include <cerrno>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mproc/error.hpp"
#include "sys/arena.hpp"
#include "sys/shm.hpp"

namespace mproc::detail {

namespace {

int map_region(int fd, std::size_t bytes, SharedRegion::Backing backing, sys::SharedMapping& out) noexcept {
  return backing == SharedRegion::Backing::sparse ? sys::map_sparse_fd(fd, bytes, out)
                                                  : sys::map_fd_shared(fd, bytes, out);
}

}  // namespace

std::shared_ptr<SharedRegion> SharedRegion::adopt(sys::UniqueFd fd, sys::SharedMapping mapping, std::uint64_t layout) {
  // The empty region first (its destructor does nothing), so that an allocation failure
  // leaves the descriptor and the mapping with their owners here; then they move in.
  std::shared_ptr<SharedRegion> region(new SharedRegion(nullptr, 0, -1, layout));
  region->size_ = mapping.size();
  region->data_ = static_cast<std::byte*>(mapping.release());
  region->fd_ = fd.release();
  return region;
}

std::shared_ptr<SharedRegion> SharedRegion::create(std::size_t bytes, std::uint64_t layout, Backing backing,
                                                   const char* debug_name) {
  sys::UniqueFd fd;
  const int created = backing == Backing::sparse ? sys::memfd_create_sparse(debug_name, bytes, fd)
                                                 : sys::memfd_create_sized(debug_name, bytes, fd);
  if (created < 0) throw OSError(-created, "memfd_create (shared memory)");
  sys::SharedMapping mapping;
  if (int rc = map_region(fd.get(), bytes, backing, mapping); rc < 0) throw OSError(-rc, "mmap of shared memory");
  return adopt(std::move(fd), std::move(mapping), layout);
}

std::shared_ptr<SharedRegion> SharedRegion::attach(RegionRef& ref, std::uint64_t layout, std::size_t bytes,
                                                   Backing backing, const char* what) {
  sys::UniqueFd fd(std::exchange(ref.fd.fd, -1));
  if (!fd) throw SerializationError(std::string("mproc: a ") + what + " was sent without its shared memory");
  // A sender built with another layout of the state (or a message that is not what it
  // claims): reading the memory with this program's layout would corrupt it.
  if (ref.layout != layout || ref.bytes != bytes)
    throw SerializationError(std::string("mproc: the ") + what +
                             " sent to this process has another memory layout than this program's (another "
                             "build or version of mproc); refused");
  struct stat status{};
  if (::fstat(fd.get(), &status) != 0) throw OSError(errno, "fstat (shared memory)");
  if (!S_ISREG(status.st_mode) || static_cast<std::uint64_t>(status.st_size) != bytes)
    throw SerializationError(std::string("mproc: the shared memory sent for a ") + what + " is " +
                             std::to_string(status.st_size) + " bytes, not the " + std::to_string(bytes) +
                             " this program expects; refused");
  sys::SharedMapping mapping;
  if (int rc = map_region(fd.get(), bytes, backing, mapping); rc < 0) throw OSError(-rc, "mmap of shared memory");
  return adopt(std::move(fd), std::move(mapping), layout);
}

SharedRegion::~SharedRegion() {
  sys::SharedMapping(data_, size_).reset();
  sys::UniqueFd(fd_).reset();
}

}  // namespace mproc::detail
