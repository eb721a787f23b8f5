// mproc/sharedctypes.hpp — multiprocessing.Value / Array / RawValue / RawArray: objects of a
// trivially copyable type in memory shared with the children forked after their creation.
//
//   mproc::Value<std::int64_t> counter(0);
//   mproc::Process p([&] { std::lock_guard guard(counter); ++counter.value(); });
//   p.start(); p.join();                                  // counter.value() == 1 here too
//
//   mproc::Array<double> samples(1000);                   // zero-filled, like Python's
//   std::ranges::fill(samples, 1.0);                      // a contiguous range
//
//   mproc::Lock lock;                                     // Python's Value('i', 5, lock=lock)
//   mproc::Value v(5, lock);                              // a Value<int, mproc::Lock>
//   v.store(v.load() + 1);                                // each call takes the lock, as v.value
//
// Every type is a handle, like std::span: copies refer to the same shared object, and the
// handle's constness does not make the object const. The memory is a memfd (see
// synchronize.hpp: never in /dev/shm, gone with its last process; one descriptor per object,
// two for a Value or an Array with their lock). Under spawn and forkserver every type here
// reaches a child as a Process argument or a pool's initargs by descriptor, with its lock;
// it cannot be a pool task's argument.
// Value and Array carry a lock (get_lock()): a new RLock by default (Python's lock=True or
// lock=None), or the Lock or RLock given to the constructor (Python's lock=a_lock; the
// type is the second template argument, deduced from the argument). They are Lockable
// themselves, so std::lock_guard guard(value) works. load()/store() take the lock for one
// read or write, as Python's v.value and a[i] do; value() and operator[] are the raw
// object and do not (Python's v.value += 1 is not atomic either: hold the lock around a
// read-modify-write). RawValue and RawArray have no lock (Python's lock=False, RawValue,
// RawArray).
#pragma once

#include <algorithm>
#include <cstdint>
#include <concepts>
#include <cstddef>
#include <initializer_list>
#include <limits>
#include <memory>
#include <mutex>
#include <ranges>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/detail/shared_region.hpp"
#include "mproc/error.hpp"
#include "mproc/synchronize.hpp"

namespace mproc {

namespace detail {

// The shared memory of `count` objects of T, with the type checks every shared ctype makes.
template <class T>
class SharedObjects {
  static_assert(std::is_trivially_copyable_v<T>,
                "mproc::Value / Array / RawValue / RawArray: T must be trivially copyable - the object lives in "
                "memory shared by several processes, where one process's constructors, destructors and heap "
                "pointers mean nothing; send such values through a Pipe or a Queue instead");
  static_assert(!std::is_const_v<T> && !std::is_volatile_v<T> && std::is_object_v<T>,
                "mproc::Value / Array / RawValue / RawArray: T must be a plain (non-const) object type");
  static_assert(alignof(T) <= 4096, "mproc::Value / Array: T's alignment must not exceed a page");

 public:
  SharedObjects() noexcept = default;  // nothing yet: loaded into
  explicit SharedObjects(std::size_t count) : count_(count) {
    if (count > std::numeric_limits<std::size_t>::max() / sizeof(T))
      throw std::length_error("mproc::Array: too many elements");
    region_ = SharedRegion::create(bytes(count), kLayout, SharedRegion::Backing::reserved, "mproc-value");
    data_ = reinterpret_cast<T*>(region_->data());
  }
  T* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return count_; }

  // By descriptor, into a spawned child: the count, then the region, whose layout word names
  // T (its spelling, size and alignment), so that a child reading another T refuses it.
  template <class Archive>
  void save(Archive& archive) const {
    archive(static_cast<std::uint64_t>(count_), region_->ref());
  }
  template <class Archive>
  void load(Archive& archive) {
    std::uint64_t count = 0;
    RegionRef ref;
    archive(count, ref);
    // An impossible count expects 0 bytes, which no region has: attach refuses it (and
    // closes the descriptor, which it owns from the call on).
    const std::size_t expected = count > std::numeric_limits<std::size_t>::max() / sizeof(T) ? 0 : bytes(count);
    region_ = SharedRegion::attach(ref, kLayout, expected, SharedRegion::Backing::reserved, "shared Value or Array");
    data_ = reinterpret_cast<T*>(region_->data());
    count_ = static_cast<std::size_t>(count);
  }

 private:
  static constexpr std::uint64_t kLayout = layout_word(type_tag<T>(), 1, sizeof(T) * 4096 + alignof(T));
  static std::size_t bytes(std::size_t count) noexcept { return std::max<std::size_t>(1, count * sizeof(T)); }
  std::shared_ptr<SharedRegion> region_;  // page-aligned, so suitably aligned for T
  T* data_ = nullptr;                     // in region_: value() and operator[] read one pointer
  std::size_t count_ = 0;
};

}  // namespace detail

/// The locks a Value or an Array can carry: process-shared and robust, like Python's
/// (a std::mutex would protect nothing across processes).
template <class L>
concept SharedCtypeLock = std::same_as<L, Lock> || std::same_as<L, RLock>;

/// multiprocessing.RawValue: one T in shared memory, no lock.
template <class T>
class RawValue {
 public:
  /// Marks a handle to shared state (detail::shared_by_descriptor): a Process argument or
  /// initarg under spawn and forkserver reaches the child by descriptor, never a pool task.
  using mproc_shared_by_descriptor = void;
  /// Value-initialized (zero for arithmetic types). Throws OSError when out of memory.
  RawValue()
    requires std::default_initializable<T>
      : RawValue(T{}) {}
  explicit RawValue(const T& initial) : objects_(1) { std::construct_at(objects_.data(), initial); }

  /// The shared object (Python's .value). Not synchronized.
  T& value() const noexcept { return *objects_.data(); }

  friend bool operator==(const RawValue& a, const RawValue& b) noexcept { return a.objects_.data() == b.objects_.data(); }

  /// Under spawn and forkserver: the child maps the same memory (see the header comment).
  /// (serialize, not save/load: Array::load(i) is Python's a[i].)
  template <class Archive>
  void serialize(Archive& archive) {
    archive(objects_);
  }

 private:
  friend struct detail::HandleAccess;
  explicit RawValue(detail::UnloadedHandle) noexcept {}
  detail::SharedObjects<T> objects_;
};

/// multiprocessing.Value: one T in shared memory with a lock — an RLock by default, or the
/// mproc::Lock / mproc::RLock given as LockType (deduced by `mproc::Value v(x, lock)`).
/// Copies share one value and one lock: `auto w = v;` is another handle to the same T, as a
/// Python reference is — a copy never duplicates the value (read it out: `T x = v.load()`).
template <class T, class LockType = RLock>
class Value {
  static_assert(SharedCtypeLock<LockType>,
                "mproc::Value<T, LockType>: the lock must be an mproc::Lock or an mproc::RLock (a lock shared "
                "between processes); for no lock at all use mproc::RawValue (Python's lock=False)");

 public:
  /// Marks a handle to shared state (detail::shared_by_descriptor): a Process argument or
  /// initarg under spawn and forkserver reaches the child by descriptor, never a pool task.
  using mproc_shared_by_descriptor = void;
  Value()
    requires std::default_initializable<T>
      : Value(T{}) {}
  /// `lock`: an existing lock to share (Python's Value(..., lock=a_lock)); a new one by
  /// default. Throws OSError when the shared memory cannot be allocated.
  explicit Value(const T& initial, LockType lock = LockType()) : raw_(initial), lock_(std::move(lock)) {}

  /// The shared object itself (the raw reference, without the lock): hold get_lock() around
  /// any access that other processes may race with.
  T& value() const noexcept { return raw_.value(); }
  /// Python's `v.value` read: a copy of the object, read with the lock held.
  /// With a Lock (not an RLock) the calling thread must not hold it already (throws
  /// mproc::Error, as acquire() does, instead of deadlocking).
  T load() const {
    std::lock_guard guard(lock_);
    return raw_.value();
  }
  /// Python's `v.value = x`: writes the object with the lock held. Same rule as load().
  void store(const T& x) const {
    std::lock_guard guard(lock_);
    raw_.value() = x;
  }
  /// The lock that guards this value (Python's get_lock()): `std::lock_guard g(v.get_lock());`.
  LockType& get_lock() const noexcept { return lock_; }
  /// The unsynchronized object (Python's get_obj()).
  RawValue<T> get_obj() const noexcept { return raw_; }

  // The synchronized wrapper's acquire/release, and Lockable.
  bool acquire(bool block = true) { return lock_.acquire(block); }
  void release() { lock_.release(); }
  void lock() { lock_.lock(); }
  bool try_lock() { return lock_.try_lock(); }
  void unlock() { lock_.unlock(); }

  /// Under spawn and forkserver: the child maps the same memory (see the header comment).
  /// (serialize, not save/load: Array::load(i) is Python's a[i].)
  template <class Archive>
  void serialize(Archive& archive) {
    archive(raw_, lock_);
  }

 private:
  friend struct detail::HandleAccess;
  explicit Value(detail::UnloadedHandle) : raw_(detail::HandleAccess::unloaded<RawValue<T>>()),
                                           lock_(detail::HandleAccess::unloaded<LockType>()) {}
  RawValue<T> raw_;
  mutable LockType lock_;
};

/// multiprocessing.RawArray: a fixed number of T in shared memory, no lock. A contiguous
/// range (begin() and end() are T*).
template <class T>
class RawArray {
 public:
  /// Marks a handle to shared state (detail::shared_by_descriptor): a Process argument or
  /// initarg under spawn and forkserver reaches the child by descriptor, never a pool task.
  using mproc_shared_by_descriptor = void;
  /// `n` value-initialized elements (zeros).
  explicit RawArray(std::size_t n)
    requires std::default_initializable<T>
      : objects_(n) {
    std::uninitialized_value_construct_n(objects_.data(), n);
  }
  RawArray(std::initializer_list<T> values) : RawArray(std::ranges::subrange(values.begin(), values.end())) {}
  /// The elements of `values`, in order.
  template <std::ranges::input_range Range>
    requires std::convertible_to<std::ranges::range_reference_t<Range>, T> &&
             (!std::same_as<std::remove_cvref_t<Range>, RawArray>)
  explicit RawArray(Range&& values) : RawArray(collect(std::forward<Range>(values))) {}

  std::size_t size() const noexcept { return objects_.size(); }
  bool empty() const noexcept { return size() == 0; }
  T* data() const noexcept { return objects_.data(); }
  T* begin() const noexcept { return data(); }
  T* end() const noexcept { return data() + size(); }
  /// Unchecked, as std::span.
  T& operator[](std::size_t i) const noexcept { return data()[i]; }
  /// Checked: throws std::out_of_range.
  T& at(std::size_t i) const {
    if (i >= size()) throw std::out_of_range("mproc::Array: index out of range");
    return data()[i];
  }

  friend bool operator==(const RawArray& a, const RawArray& b) noexcept { return a.data() == b.data(); }

  /// Under spawn and forkserver: the child maps the same memory (see the header comment).
  /// (serialize, not save/load: Array::load(i) is Python's a[i].)
  template <class Archive>
  void serialize(Archive& archive) {
    archive(objects_);
  }

 private:
  friend struct detail::HandleAccess;
  explicit RawArray(detail::UnloadedHandle) noexcept {}
  struct Collected {
    std::vector<T> values;
  };
  template <class Range>
  static Collected collect(Range&& values) {
    Collected out;
    for (auto&& value : values) out.values.push_back(static_cast<T>(value));
    return out;
  }
  explicit RawArray(Collected collected) : objects_(collected.values.size()) {
    std::uninitialized_copy(collected.values.begin(), collected.values.end(), objects_.data());
  }

  detail::SharedObjects<T> objects_;
};

/// multiprocessing.Array: a RawArray with a lock — an RLock by default, or the mproc::Lock /
/// mproc::RLock given as LockType.
/// Copies share one array and one lock (a copy is another handle, never a new array; copy the
/// elements out with std::vector<T>(a.begin(), a.end())).
template <class T, class LockType = RLock>
class Array {
  static_assert(SharedCtypeLock<LockType>,
                "mproc::Array<T, LockType>: the lock must be an mproc::Lock or an mproc::RLock (a lock shared "
                "between processes); for no lock at all use mproc::RawArray (Python's lock=False)");

 public:
  /// Marks a handle to shared state (detail::shared_by_descriptor): a Process argument or
  /// initarg under spawn and forkserver reaches the child by descriptor, never a pool task.
  using mproc_shared_by_descriptor = void;
  /// `n` value-initialized elements (zeros). `lock`: an existing lock to share; a new one by
  /// default. Throws OSError when the shared memory cannot be allocated.
  explicit Array(std::size_t n, LockType lock = LockType())
    requires std::default_initializable<T>
      : raw_(n), lock_(std::move(lock)) {}
  Array(std::initializer_list<T> values, LockType lock = LockType()) : raw_(values), lock_(std::move(lock)) {}
  template <std::ranges::input_range Range>
    requires std::convertible_to<std::ranges::range_reference_t<Range>, T> &&
             (!std::same_as<std::remove_cvref_t<Range>, Array>)
  explicit Array(Range&& values, LockType lock = LockType()) : raw_(std::forward<Range>(values)), lock_(std::move(lock)) {}

  std::size_t size() const noexcept { return raw_.size(); }
  bool empty() const noexcept { return raw_.empty(); }
  T* data() const noexcept { return raw_.data(); }
  T* begin() const noexcept { return raw_.begin(); }
  T* end() const noexcept { return raw_.end(); }
  /// The raw elements, without the lock (as RawArray).
  T& operator[](std::size_t i) const noexcept { return raw_[i]; }
  T& at(std::size_t i) const { return raw_.at(i); }
  /// Python's `a[i]` read: element i, read with the lock held. Throws std::out_of_range
  /// (Python's IndexError). With a Lock, the calling thread must not hold it already.
  T load(std::size_t i) const {
    std::lock_guard guard(lock_);
    return raw_.at(i);
  }
  /// Python's `a[i] = x`: writes element i with the lock held. Same rules as load(i).
  void store(std::size_t i, const T& x) const {
    std::lock_guard guard(lock_);
    raw_.at(i) = x;
  }

  LockType& get_lock() const noexcept { return lock_; }
  RawArray<T> get_obj() const noexcept { return raw_; }

  bool acquire(bool block = true) { return lock_.acquire(block); }
  void release() { lock_.release(); }
  void lock() { lock_.lock(); }
  bool try_lock() { return lock_.try_lock(); }
  void unlock() { lock_.unlock(); }

  /// Under spawn and forkserver: the child maps the same memory (see the header comment).
  /// (serialize, not save/load: Array::load(i) is Python's a[i].)
  template <class Archive>
  void serialize(Archive& archive) {
    archive(raw_, lock_);
  }

 private:
  friend struct detail::HandleAccess;
  explicit Array(detail::UnloadedHandle) : raw_(detail::HandleAccess::unloaded<RawArray<T>>()),
                                           lock_(detail::HandleAccess::unloaded<LockType>()) {}
  RawArray<T> raw_;
  mutable LockType lock_;
};

}  // namespace mproc
