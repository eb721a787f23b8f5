// mproc/shared_memory.hpp — multiprocessing.shared_memory.SharedMemory: a named block of
// memory in /dev/shm that any process, related or not, can attach by name.
//
//   mproc::SharedMemory block(std::nullopt, true, 1 << 20);   // create, generated name
//   std::ranges::fill(block.buf(), std::byte{1});
//   mproc::SharedMemory view(block.name());                    // attach (any process)
//
// Lifetime policy (a decision; Python leaves a segment behind when its creator forgets
// unlink() or is killed before its resource tracker runs):
// - By default (track = true) the creating process unlinks the segment when its last handle
//   to it is destroyed, unless unlink() was called already. Processes that attached by name
//   keep their mapping; the name is gone. Copies of the handle in forked children never
//   unlink (only the creating process does).
// - track = false makes a segment that persists until some process calls unlink(), as a
//   Python segment does; unlink() is then the creator's job (or any process's).
// - A creator killed by a signal cannot run its destructor: a tracked segment then stays in
//   /dev/shm until unlinked by name (mproc has no resource-tracker process).
// - Attaching never takes ownership: an attacher's handle only unmaps.
//
// Thread safety: a handle may be used from several threads; close() and unlink() race with
// concurrent buf() users as munmap/shm_unlink do (do not close a block others still read).
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>

namespace mproc {

namespace detail {
struct SharedMemoryBlock;
}

class SharedMemory {
 public:
  /// Python's SharedMemory(name=None, create=False, size=0, *, track=True).
  /// - create = true: a new segment of `size` bytes (> 0), zero-filled, its pages reserved
  ///   (a full /dev/shm is an OSError(ENOSPC) now, never a SIGBUS later); with no name a
  ///   unique one is generated. Throws OSError with errno EEXIST when `name` exists.
  /// - create = false: attaches the existing segment `name` (required); `size` is ignored
  ///   and size() is the segment's. Throws OSError with errno ENOENT when it does not exist.
  /// Names are as in Python: "psm_abc" (a leading '/' is accepted and not part of name()),
  /// no other '/', at most 255 characters. Throws std::invalid_argument for a bad name, for
  /// size 0 when creating, or a missing name when attaching.
  explicit SharedMemory(std::optional<std::string> name = std::nullopt, bool create = false, std::size_t size = 0,
                        bool track = true);

  /// The segment's name, without the leading '/'.
  const std::string& name() const;
  /// Its size in bytes.
  std::size_t size() const;
  /// The mapped bytes. Throws mproc::Error after close().
  std::span<std::byte> buf() const;

  /// Unmaps this process's view (every copy of this handle). Idempotent. The segment itself
  /// stays until unlinked.
  void close();
  /// Removes the name from /dev/shm; mappings stay valid until closed. Throws OSError
  /// (ENOENT) when the name is already gone.
  void unlink();

  friend bool operator==(const SharedMemory& a, const SharedMemory& b) noexcept { return a.block_ == b.block_; }

 private:
  std::shared_ptr<detail::SharedMemoryBlock> block_;
};

}  // namespace mproc
