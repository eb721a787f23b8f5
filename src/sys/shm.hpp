// sys/shm — shared memory: anonymous shared mappings (inherited across fork), memfd and
// POSIX named objects in /dev/shm. errno-level and noexcept.
//
// Why space is reserved up front: /dev/shm is a tmpfs, and ftruncate() on it only sets a
// size. A page that cannot be allocated later kills the process that touches it with SIGBUS.
// Every object created here is backed with posix_fallocate first, so a full /dev/shm is an
// ENOSPC at creation time — a clear error — instead of a crash in the middle of a task.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include "sys/fd.hpp"

namespace mproc::sys {

/// Owns one mmap'ed region; unmaps it on destruction. Move-only.
class SharedMapping {
 public:
  SharedMapping() noexcept = default;
  SharedMapping(void* address, std::size_t length) noexcept : address_(address), length_(length) {}
  SharedMapping(SharedMapping&& other) noexcept
      : address_(std::exchange(other.address_, nullptr)), length_(std::exchange(other.length_, 0)) {}
  SharedMapping& operator=(SharedMapping&& other) noexcept {
    if (this != &other) {
      reset();
      address_ = std::exchange(other.address_, nullptr);
      length_ = std::exchange(other.length_, 0);
    }
    return *this;
  }
  SharedMapping(const SharedMapping&) = delete;
  SharedMapping& operator=(const SharedMapping&) = delete;
  ~SharedMapping() { reset(); }

  void* get() const noexcept { return address_; }
  /// Gives up ownership: the caller unmaps.
  void* release() noexcept {
    length_ = 0;
    return std::exchange(address_, nullptr);
  }
  std::size_t size() const noexcept { return length_; }
  explicit operator bool() const noexcept { return address_ != nullptr; }
  void reset() noexcept;

 private:
  void* address_ = nullptr;
  std::size_t length_ = 0;
};

/// A zero-filled MAP_SHARED | MAP_ANONYMOUS region of `size` bytes (> 0): shared with every
/// child forked after this call, never visible in /dev/shm, gone with its last mapper.
/// Returns 0 or -errno (ENOMEM).
int map_anonymous_shared(std::size_t size, SharedMapping& out) noexcept;

/// Maps `size` bytes of the object behind `fd` (read-write, MAP_SHARED). Returns 0 or -errno.
int map_fd_shared(int fd, std::size_t size, SharedMapping& out) noexcept;

/// memfd_create (close-on-exec) with `size` bytes reserved. Returns 0 or -errno (ENOSPC).
int memfd_create_sized(const char* debug_name, std::size_t size, UniqueFd& out) noexcept;

/// shm_open(name, O_CREAT | O_EXCL) with `size` bytes reserved; on failure nothing is left
/// behind. `name` must start with '/'. Returns 0, -EEXIST, -ENOSPC, -EINVAL, or -errno.
int shm_create(const char* name, std::size_t size, UniqueFd& out) noexcept;

/// shm_open of an existing object; stores its current size. Returns 0, -ENOENT, or -errno.
int shm_attach(const char* name, UniqueFd& out, std::size_t& size) noexcept;

/// shm_unlink. Returns 0, -ENOENT, or -errno.
int shm_remove(const char* name) noexcept;

/// Which file an object is (st_dev, st_ino): a name that was unlinked and created again
/// names a different file, even with the same size and contents.
struct FileId {
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
  friend bool operator==(const FileId&, const FileId&) = default;
};

/// The identity of the file behind `fd`. Returns 0 or -errno.
int file_id_of(int fd, FileId& out) noexcept;

/// The first half of creating a named object that is never visible half-made: an unnamed
/// file in /dev/shm (O_TMPFILE) with `size` bytes reserved, and its identity, so that the
/// caller can record it (in the resource tracker) before any name refers to it. Returns 0,
/// -ENOSPC, or -errno (EOPNOTSUPP, EISDIR or EINVAL where the kernel or file system has no
/// O_TMPFILE: use shm_create instead).
int shm_create_unnamed(std::size_t size, UniqueFd& out, FileId& id) noexcept;

/// The second half: gives the unnamed file behind `fd` the name `name` ('/' + at most 255
/// characters), atomically — -EEXIST when the name is taken, as shm_create's O_EXCL.
/// Returns 0, -EEXIST, or -errno (ENOENT when /proc is not mounted: use shm_create).
int shm_link(int fd, const char* name) noexcept;

/// Removes `name` only while it still names the file `id`: a segment someone else created
/// under the same name after ours was unlinked stays. Returns 0, -ENOENT, -ESTALE (the
/// name is another file's), or -errno. (Between the check and the unlink another process
/// could swap the file; no system call unlinks by identity.) Async-signal-safe: the
/// resource tracker calls it.
int shm_remove_if(const char* name, const FileId& id) noexcept;

}  // namespace mproc::sys
