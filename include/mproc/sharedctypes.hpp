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
// Every type is a handle, like std::span: copies refer to the same shared object, and the
// handle's constness does not make the object const. The memory is an anonymous shared
// mapping (see synchronize.hpp: never in /dev/shm, gone with its last process).
// Value and Array carry an RLock (get_lock(), Python's default lock=True) and are Lockable
// themselves, so std::lock_guard guard(value) works; reads and writes through value() or
// operator[] do not take the lock by themselves (as Python's v.value += 1 is not atomic
// either). RawValue and RawArray have no lock (Python's lock=False / RawValue / RawArray).
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <initializer_list>
#include <limits>
#include <memory>
#include <ranges>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include "mproc/detail/shared_region.hpp"
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
  explicit SharedObjects(std::size_t count) : count_(count) {
    if (count > std::numeric_limits<std::size_t>::max() / sizeof(T))
      throw std::length_error("mproc::Array: too many elements");
    region_ = allocate_shared_region(std::max<std::size_t>(1, count * sizeof(T)));
  }
  T* data() const noexcept { return reinterpret_cast<T*>(region_.get()); }
  std::size_t size() const noexcept { return count_; }

 private:
  std::shared_ptr<std::byte> region_;  // page-aligned, so suitably aligned for T
  std::size_t count_;
};

}  // namespace detail

/// multiprocessing.RawValue: one T in shared memory, no lock.
template <class T>
class RawValue {
 public:
  /// Value-initialized (zero for arithmetic types). Throws OSError when out of memory.
  RawValue()
    requires std::default_initializable<T>
      : RawValue(T{}) {}
  explicit RawValue(const T& initial) : objects_(1) { std::construct_at(objects_.data(), initial); }

  /// The shared object (Python's .value). Not synchronized.
  T& value() const noexcept { return *objects_.data(); }

  friend bool operator==(const RawValue& a, const RawValue& b) noexcept { return a.objects_.data() == b.objects_.data(); }

 private:
  detail::SharedObjects<T> objects_;
};

/// multiprocessing.Value: one T in shared memory with an RLock.
template <class T>
class Value {
 public:
  Value()
    requires std::default_initializable<T>
      : Value(T{}) {}
  /// `lock`: an existing RLock to share (Python's Value(..., lock=an_rlock)); a new one by default.
  explicit Value(const T& initial, RLock lock = RLock()) : raw_(initial), lock_(std::move(lock)) {}

  T& value() const noexcept { return raw_.value(); }
  /// The lock that guards this value (Python's get_lock()): `std::lock_guard g(v.get_lock());`.
  RLock& get_lock() const noexcept { return lock_; }
  /// The unsynchronized object (Python's get_obj()).
  RawValue<T> get_obj() const noexcept { return raw_; }

  // The synchronized wrapper's acquire/release, and Lockable.
  bool acquire(bool block = true) { return lock_.acquire(block); }
  void release() { lock_.release(); }
  void lock() { lock_.lock(); }
  bool try_lock() { return lock_.try_lock(); }
  void unlock() { lock_.unlock(); }

 private:
  RawValue<T> raw_;
  mutable RLock lock_;
};

/// multiprocessing.RawArray: a fixed number of T in shared memory, no lock. A contiguous
/// range (begin() and end() are T*).
template <class T>
class RawArray {
 public:
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

 private:
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

/// multiprocessing.Array: a RawArray with an RLock.
template <class T>
class Array {
 public:
  explicit Array(std::size_t n, RLock lock = RLock())
    requires std::default_initializable<T>
      : raw_(n), lock_(std::move(lock)) {}
  Array(std::initializer_list<T> values) : raw_(values) {}
  template <std::ranges::input_range Range>
    requires std::convertible_to<std::ranges::range_reference_t<Range>, T> &&
             (!std::same_as<std::remove_cvref_t<Range>, Array>)
  explicit Array(Range&& values, RLock lock = RLock()) : raw_(std::forward<Range>(values)), lock_(std::move(lock)) {}

  std::size_t size() const noexcept { return raw_.size(); }
  bool empty() const noexcept { return raw_.empty(); }
  T* data() const noexcept { return raw_.data(); }
  T* begin() const noexcept { return raw_.begin(); }
  T* end() const noexcept { return raw_.end(); }
  T& operator[](std::size_t i) const noexcept { return raw_[i]; }
  T& at(std::size_t i) const { return raw_.at(i); }

  RLock& get_lock() const noexcept { return lock_; }
  RawArray<T> get_obj() const noexcept { return raw_; }

  bool acquire(bool block = true) { return lock_.acquire(block); }
  void release() { lock_.release(); }
  void lock() { lock_.lock(); }
  bool try_lock() { return lock_.try_lock(); }
  void unlock() { lock_.unlock(); }

 private:
  RawArray<T> raw_;
  mutable RLock lock_;
};

}  // namespace mproc
