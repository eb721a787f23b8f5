// mproc/detail/shared_region.hpp — the shared memory behind the shared-state types (Queue,
// synchronize.hpp, sharedctypes.hpp): a memfd mapped MAP_SHARED, and the handle that passes
// it to a spawned child by descriptor. Not part of the public API.
//
// Why a memfd and not an anonymous mapping: fork passes either on, but an exec'd child (spawn,
// forkserver) can only be given a descriptor. Each object keeps its memfd open (close-on-exec)
// for its lifetime in this process, so that it can be passed at any time: one descriptor per
// object. The file has no name anywhere (nothing in /dev/shm) and goes with its last mapping
// and descriptor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

#include "mproc/codec.hpp"
#include "mproc/detail/process_target.hpp"
#include "mproc/detail/shared_handle.hpp"

namespace mproc::sys {
class SharedMapping;
class UniqueFd;
}  // namespace mproc::sys

namespace mproc::detail {

/// A region's identity as it crosses in a start message. The layout word says what the
/// sender put in the memory (which state, which version of its layout, its size): a child
/// whose own word differs refuses it rather than read it with another layout.
struct RegionRef {
  std::uint64_t layout = 0;
  std::uint64_t bytes = 0;
  PassedFd fd;  // last: a message that fails to decode before it leaves no descriptor open
  template <class Archive>
  void serialize(Archive& archive) {
    archive(layout, bytes, fd);
  }
};

/// One memfd and this process's MAP_SHARED view of it. Unmapped and closed with the last
/// shared_ptr copy; each process unmaps only its own view.
class SharedRegion {
 public:
  /// reserved: every page allocated up front (ENOSPC now, never SIGBUS later). sparse: the
  /// size only (ftruncate, MAP_NORESERVE), pages committed by the user (the queue's arena).
  enum class Backing { reserved, sparse };

  /// `bytes` (> 0) of zero-filled shared memory, page-aligned. `debug_name` shows in
  /// /proc/<pid>/fd. Throws OSError (ENOMEM, ENOSPC, EMFILE).
  static std::shared_ptr<SharedRegion> create(std::size_t bytes, std::uint64_t layout, Backing backing,
                                              const char* debug_name);
  /// The receiving side: takes `ref`'s descriptor (closing it on failure), checks the layout
  /// word and the file's size against what this program expects, and maps it. Throws
  /// SerializationError on a mismatch (naming `what`), OSError when it cannot be mapped.
  static std::shared_ptr<SharedRegion> attach(RegionRef& ref, std::uint64_t layout, std::size_t bytes,
                                              Backing backing, const char* what);

  SharedRegion(const SharedRegion&) = delete;
  SharedRegion& operator=(const SharedRegion&) = delete;
  ~SharedRegion();

  std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  int fd() const noexcept { return fd_; }
  /// What crosses for this region (export_fd: only inside a start message).
  RegionRef ref() const noexcept { return RegionRef{layout_, size_, PassedFd{fd_}}; }

 private:
  static std::shared_ptr<SharedRegion> adopt(sys::UniqueFd fd, sys::SharedMapping mapping, std::uint64_t layout);
  SharedRegion(std::byte* data, std::size_t size, int fd, std::uint64_t layout) noexcept
      : data_(data), size_(size), fd_(fd), layout_(layout) {}
  std::byte* data_;
  std::size_t size_;
  int fd_;
  std::uint64_t layout_;
};

/// The layout word of a state: its name's hash, a version bumped whenever its layout
/// changes in a way its size does not show, and its size.
constexpr std::uint64_t layout_word(std::uint64_t identity, std::uint32_t version, std::uint64_t size) noexcept {
  return identity ^ (std::uint64_t{version} << 40) ^ (size * 0x9e3779b97f4a7c15ull);
}

/// A handle to one `State` in its own shared region: what Lock, Semaphore, Event, Condition
/// and Barrier hold. Copies refer to the same state. Crosses into a spawned child by
/// descriptor (save/load). State is complete only where it is defined (src/shm/synchronize.cpp):
/// make() and attach() are instantiated there.
template <class State>
class SharedState {
 public:
  SharedState() noexcept = default;

  /// A new region holding State{args...}. State declares kLayoutVersion and kDebugName.
  template <class... Args>
  static SharedState make(Args&&... args) {
    static_assert(std::is_standard_layout_v<State>, "a shared state is read by other processes: standard layout");
    static_assert(std::is_trivially_destructible_v<State>,
                  "a shared state is never destroyed: other processes may still use it");
    static_assert(alignof(State) <= 4096, "a region is page-aligned");
    SharedState out;
    out.region_ = SharedRegion::create(sizeof(State), layout(), SharedRegion::Backing::reserved, State::kDebugName);
    out.state_ = new (out.region_->data()) State(std::forward<Args>(args)...);
    return out;
  }
  /// The state a start message names (see SharedRegion::attach). Defined, and instantiated
  /// for each State, beside the States (a user's translation unit sees them incomplete).
  static SharedState attach(RegionRef& ref);

  State* get() const noexcept { return state_; }
  State& operator*() const noexcept { return *state_; }
  State* operator->() const noexcept { return state_; }
  explicit operator bool() const noexcept { return state_ != nullptr; }
  friend bool operator==(const SharedState& a, const SharedState& b) noexcept { return a.state_ == b.state_; }

  template <class Archive>
  void save(Archive& archive) const {
    archive(region_->ref());
  }
  template <class Archive>
  void load(Archive& archive) {
    RegionRef ref;
    archive(ref);
    *this = attach(ref);
  }

 private:
  static constexpr std::uint64_t layout() noexcept {
    return layout_word(type_tag<State>(), State::kLayoutVersion, sizeof(State));
  }
  std::shared_ptr<SharedRegion> region_;
  State* state_ = nullptr;  // in region_: the fast paths read one pointer, as before
};

}  // namespace mproc::detail
