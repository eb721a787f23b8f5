// ported_value_array — a child writes to a shared Value and Array (Python original:
// ported_value_array.py).
//
//   Python                                      mproc
//   Value('d', 0.0)                             mproc::Value<double> num(0.0);  (typecode: the type)
//   Array('i', range(10))                       mproc::Array<int> arr(std::views::iota(0, 10));
//   Process(target=f, args=(num, arr))          mproc::Process p(f, num, arr);  (copies share
//                                               the memory: a Value/Array is a handle)
//   n.value = 3.1415927                         n.store(3.1415927)  (under the Value's lock, as
//                                               Python's n.value =); n.value() is the raw double
//   a[i] = -a[i]                                a[i] = -a[i]  (raw, like Python: not atomic)
//   arr[:]                                      the Array is a contiguous range
#include <mproc/mproc.hpp>

#include <cstddef>
#include <cstdio>
#include <ranges>

namespace {

void f(mproc::Value<double> n, mproc::Array<int> a) {
  n.store(3.1415927);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = -a[i];
}

}  // namespace

int main() {
  mproc::Value<double> num(0.0);
  mproc::Array<int> arr(std::views::iota(0, 10));

  mproc::Process p(f, num, arr);
  p.start();
  p.join();

  std::printf("%.7f\n", num.load());
  std::printf("[");
  for (std::size_t i = 0; i < arr.size(); ++i) std::printf("%s%d", i ? ", " : "", arr[i]);
  std::printf("]\n");
  return p.exitcode() == 0 ? 0 : 1;
}
