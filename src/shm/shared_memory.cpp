#include "mproc/shared_memory.hpp"

#include <cerrno>
#include <cstdio>
#include <mutex>
#include <random>
#include <stdexcept>
#include <unistd.h>
#include <utility>

#include "mproc/error.hpp"
#include "sys/shm.hpp"
#include "sys/shm_tracker.hpp"

namespace mproc {

namespace detail {

struct SharedMemoryBlock {
  std::string name;  // without the leading '/'
  std::size_t size = 0;
  // Set when this process created the segment with track = true: it removes the segment
  // when the last handle goes (and its tracker if it dies first).
  pid_t owner = 0;
  sys::FileId id;                         // the file created, for unlinking only that file
  sys::TrackerSlot* tracked = nullptr;    // the tracker's registration; guarded by mutex
  mutable std::mutex mutex;
  sys::SharedMapping mapping;  // guarded by mutex
  bool unlinked = false;       // guarded by mutex

  SharedMemoryBlock() = default;
  SharedMemoryBlock(const SharedMemoryBlock&) = delete;
  SharedMemoryBlock& operator=(const SharedMemoryBlock&) = delete;
  ~SharedMemoryBlock() {
    // Only the creator removes: a forked child destroying its copy of the handle must not
    // remove a segment its parent still owns, nor touch the parent's registration. And only
    // the file it created: if someone else unlinked the name and made a new segment under
    // it, the newcomer stays.
    if (!owned_here()) return;
    if (!unlinked) sys::shm_remove_if(("/" + name).c_str(), id);
    sys::shm_untrack(tracked);
  }

  // True in the process that created the segment with track = true. (getpid(), not a
  // cached pid: a child made by a raw clone() must not pass for its parent.)
  bool owned_here() const noexcept { return owner != 0 && ::getpid() == owner; }
};

}  // namespace detail

namespace {

constexpr std::size_t kMaxNameLength = 255;  // NAME_MAX of the /dev/shm file

std::string checked_name(std::string name) {
  // Python's ValueError("embedded null character"): the kernel would see a shorter name.
  if (name.find('\0') != std::string::npos)
    throw std::invalid_argument("SharedMemory: the name contains a null character");
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

namespace {

bool no_tmpfile_support(int rc) { return rc == -EOPNOTSUPP || rc == -EISDIR || rc == -EINVAL || rc == -ENOENT; }

// Creates the segment `block.name` of `size` bytes for the constructor. Tracked: registered
// with this process's resource tracker before the name exists, so that no moment exists at
// which a SIGKILL leaves a named segment that the tracker does not know about. Returns 0,
// -EEXIST, or -errno; throws for a tracker that cannot start.
int create_segment(detail::SharedMemoryBlock& block, std::size_t size, bool track, sys::UniqueFd& fd) {
  const std::string path = "/" + block.name;
  if (track) {
    // An unnamed file first (its identity known), then the registration, then the name.
    int rc = sys::shm_create_unnamed(size, fd, block.id);
    if (rc == 0) {
      if (int tracked = sys::shm_track(path.c_str(), block.id, &block.tracked); tracked < 0)
        throw OSError(-tracked, "SharedMemory: starting the resource tracker");
      rc = sys::shm_link(fd.get(), path.c_str());
      if (rc == 0) return 0;
      sys::shm_untrack(std::exchange(block.tracked, nullptr));
      fd.reset();
      if (rc == -EEXIST || !no_tmpfile_support(rc)) return rc;
    } else if (!no_tmpfile_support(rc)) {
      return rc;
    }
    // No O_TMPFILE on /dev/shm, or no /proc to link it through: shm_open, registered right
    // after (a creator killed between the two leaves that one segment behind).
  }
  if (int rc = sys::shm_create(path.c_str(), size, fd); rc < 0) return rc;
  if (int rc = sys::file_id_of(fd.get(), block.id); rc < 0) {
    sys::shm_remove(path.c_str());
    return rc;
  }
  if (track) {
    if (int tracked = sys::shm_track(path.c_str(), block.id, &block.tracked); tracked < 0) {
      sys::shm_remove(path.c_str());
      throw OSError(-tracked, "SharedMemory: starting the resource tracker");
    }
  }
  return 0;
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
      int rc = create_segment(block, size, track, fd);
      if (rc == 0) break;
      if (rc != -EEXIST || name || attempt == 16) throw OSError(-rc, "SharedMemory: creating '" + block.name + "'");
    }
    block.size = size;
    // From here on, a throw destroys block_, whose destructor removes a tracked segment.
    if (track) block.owner = ::getpid();
  } else {
    if (!name) throw std::invalid_argument("SharedMemory: a name is required to attach (create = false)");
    block.name = checked_name(*name);
    if (int rc = sys::shm_attach(("/" + block.name).c_str(), fd, block.size); rc < 0)
      throw OSError(-rc, "SharedMemory: attaching '" + block.name + "'");
    if (block.size == 0) throw Error("SharedMemory: the segment '" + block.name + "' is empty");
  }
  // The descriptor is not needed once mapped (the mapping keeps the object alive).
  if (int rc = sys::map_fd_shared(fd.get(), block.size, block.mapping); rc < 0) {
    if (create && !track) sys::shm_remove_if(("/" + block.name).c_str(), block.id);
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
  detail::SharedMemoryBlock& block = *block_;
  std::lock_guard guard(block.mutex);
  int rc = sys::shm_remove(("/" + block.name).c_str());
  // Python's unlink() unregisters from the tracker: the segment is no longer ours to remove
  // (also when someone else already did). A forked child leaves its parent's registration.
  if ((rc == 0 || rc == -ENOENT) && block.owned_here()) sys::shm_untrack(std::exchange(block.tracked, nullptr));
  if (rc < 0) throw OSError(-rc, "SharedMemory.unlink: '" + block.name + "'");
  block.unlinked = true;
}

}  // namespace mproc
