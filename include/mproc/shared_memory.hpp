// mproc/shared_memory.hpp — multiprocessing.shared_memory.SharedMemory: a named block of
// memory in /dev/shm that any process, related or not, can attach by name.
//
//   mproc::SharedMemory block(std::nullopt, true, 1 << 20);   // create, generated name
//   std::ranges::fill(block.buf(), std::byte{1});
//   mproc::SharedMemory view(block.name());                    // attach (any process)
//
// Lifetime policy (Python 3.13's `track` parameter; mproc removes a tracked segment when its
// creator is done with it, where Python waits for its resource tracker to shut down):
// - track = true (the default): the segment belongs to the process that created it. It is
//   unlinked when that process's last handle to it is destroyed (unless unlink() ran
//   already) or, if the process ends first by any means — _exit, an uncaught signal,
//   SIGKILL — by its resource tracker: a helper process forked at the process's first
//   tracked segment, which waits for the process to end, unlinks what it left, warns on
//   stderr ("mproc resource_tracker: process N ended without unlinking its shared_memory
//   objects; unlinked: /name ...", as Python's tracker warns about leaked objects), and
//   exits. Only the file created is ever unlinked: if the name was unlinked by someone else
//   and reused for a new segment, the newcomer stays. Copies of the handle in forked
//   children never unlink (only the creating process does), and a child that creates
//   segments gets its own tracker.
// - So a tracked segment never outlives its creator. A forked child that hands a segment to
//   its parent by name must either keep running while the parent attaches (the parent's
//   mapping stays valid after the name is gone) or create it with track = false. (Python's
//   processes of one family share one tracker, which unlinks at the end of the whole
//   family; a Python process of another family that attaches with track=True also
//   registers and unlinks it at its exit — mproc never lets an attacher unlink.)
// - track = false makes a segment that persists until some process calls unlink(), as a
//   Python segment created with track=False does; unlink() is then the creator's job (or any
//   process's).
// - Attaching never takes ownership: an attacher's handle only unmaps.
// - unlink() removes the name and ends the tracking (Python's unlink() unregisters).
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
  /// no other '/', no null character, at most 255 characters. Throws std::invalid_argument
  /// for a bad name, for size 0 when creating, or a missing name when attaching.
  /// - track: see the lifetime policy above. The first tracked creation in a process starts
  ///   its resource tracker (one fork); OSError if that fails.
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
  /// Removes the name from /dev/shm (whatever segment it names now, as Python's unlink) and
  /// ends the tracking; mappings stay valid until closed. Throws OSError (ENOENT) when the
  /// name is already gone.
  void unlink();

  friend bool operator==(const SharedMemory& a, const SharedMemory& b) noexcept { return a.block_ == b.block_; }

 private:
  std::shared_ptr<detail::SharedMemoryBlock> block_;
};

}  // namespace mproc
