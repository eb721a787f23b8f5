#include "mproc/shared_memory.hpp"

#include <cerrno>
#include <cstdio>
#include <mutex>
#include <random>
#include <stdexcept>
#include <unistd.h>

#include "mproc/error.hpp"
#include "sys/shm.hpp"

namespace mproc {

namespace detail {

struct SharedMemoryBlock {
  std::string name;  // without the leading '/'
  std::size_t size = 0;
  pid_t unlink_by = 0;  // the creating process when tracked: it unlinks at the end
  mutable std::mutex mutex;
  sys::SharedMapping mapping;  // guarded by mutex
  bool unlinked = false;       // guarded by mutex

  SharedMemoryBlock() = default;
  SharedMemoryBlock(const SharedMemoryBlock&) = delete;
  SharedMemoryBlock& operator=(const SharedMemoryBlock&) = delete;
  ~SharedMemoryBlock() {
    // Only the creator unlinks: a forked child destroying its copy of the handle must not
    // remove a segment its parent still owns.
    if (unlink_by != 0 && !unlinked && ::getpid() == unlink_by) sys::shm_remove(("/" + name).c_str());
  }
};

}  // namespace detail

namespace {

constexpr std::size_t kMaxNameLength = 255;  // NAME_MAX of the /dev/shm file

std::string checked_name(std::string name) {
  if (!name.empty() && name.front() == '/') name.erase(0, 1);
  if (name.empty()) throw std::invalid_argument("SharedMemory: the name is empty");
  if (name.size() > kMaxNameLength) throw std::invalid_argument("SharedMemory: the name is longer than 255 characters");
  if (name.find('/') != std::string::npos || name == "." || name == "..")
    throw std::invalid_argument("SharedMemory: the name '" + name + "' may not contain '/' (past a leading one)");
  return name;
}

// Python's scheme: "psm_" and 8 random hex digits; a clash is retried by the caller.
std::string generated_name() {
  static thread_local std::mt19937_64 generator(std::random_device{}() ^ static_cast<unsigned>(::getpid()));
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "psm_%08x", static_cast<unsigned>(generator() & 0xffffffffu));
  return buffer;
}

}  // namespace

SharedMemory::SharedMemory(std::optional<std::string> name, bool create, std::size_t size, bool track)
    : block_(std::make_shared<detail::SharedMemoryBlock>()) {
  detail::SharedMemoryBlock& block = *block_;
  sys::UniqueFd fd;
  if (create) {
    if (size == 0) throw std::invalid_argument("SharedMemory: size must be > 0 when creating");
    // A generated name may clash with an existing segment: retry a few fresh ones.
    for (int attempt = 0;; ++attempt) {
      block.name = name ? checked_name(*name) : generated_name();
      int rc = sys::shm_create(("/" + block.name).c_str(), size, fd);
      if (rc == 0) break;
      if (rc != -EEXIST || name || attempt == 16) throw OSError(-rc, "SharedMemory: creating '" + block.name + "'");
    }
    block.size = size;
    if (track) block.unlink_by = ::getpid();
  } else {
    if (!name) throw std::invalid_argument("SharedMemory: a name is required to attach (create = false)");
    block.name = checked_name(*name);
    if (int rc = sys::shm_attach(("/" + block.name).c_str(), fd, block.size); rc < 0)
      throw OSError(-rc, "SharedMemory: attaching '" + block.name + "'");
    if (block.size == 0) throw Error("SharedMemory: the segment '" + block.name + "' is empty");
  }
  // The descriptor is not needed once mapped (the mapping keeps the object alive).
  if (int rc = sys::map_fd_shared(fd.get(), block.size, block.mapping); rc < 0) {
    if (create && !track) sys::shm_remove(("/" + block.name).c_str());  // a tracked one goes with block_
    throw OSError(-rc, "SharedMemory: mapping '" + block.name + "'");
  }
}

const std::string& SharedMemory::name() const { return block_->name; }

std::size_t SharedMemory::size() const { return block_->size; }

std::span<std::byte> SharedMemory::buf() const {
  std::lock_guard guard(block_->mutex);
  if (!block_->mapping) throw Error("SharedMemory.buf: '" + block_->name + "' is closed");
  return {static_cast<std::byte*>(block_->mapping.get()), block_->size};
}

void SharedMemory::close() {
  std::lock_guard guard(block_->mutex);
  block_->mapping.reset();
}

void SharedMemory::unlink() {
  std::lock_guard guard(block_->mutex);
  if (int rc = sys::shm_remove(("/" + block_->name).c_str()); rc < 0)
    throw OSError(-rc, "SharedMemory.unlink: '" + block_->name + "'");
  block_->unlinked = true;
}

}  // namespace mproc
