// ported_queue — a child puts a list on a Queue, the parent gets it (Python original:
// ported_queue.py).
//
//   Python                                      mproc
//   q = Queue()                                 mproc::Queue<Item> q;  (typed: one type per queue)
//   [42, None, 'hello']                         a heterogeneous list: a std::tuple when its
//                                               shape is fixed, a vector of std::variant when
//                                               it is not (None: std::monostate / nullopt)
//   Process(target=f, args=(q,))                mproc::Process p(f, q);  (a copy of q is the
//                                               same queue, as a Python reference is)
//   q.get()                                     q.get()
#include <mproc/mproc.hpp>

#include <cstdio>
#include <string>
#include <variant>
#include <vector>

namespace {

using Value = std::variant<std::monostate, int, std::string>;   // None, an int, a str
using Item = std::vector<Value>;

void f(mproc::Queue<Item> q) { q.put(Item{42, std::monostate{}, std::string("hello")}); }

// Python's repr of the list, for the same output.
std::string repr(const Item& item) {
  std::string out = "[";
  for (const Value& v : item) {
    if (out.size() > 1) out += ", ";
    if (std::holds_alternative<std::monostate>(v)) out += "None";
    if (const int* i = std::get_if<int>(&v)) out += std::to_string(*i);
    if (const std::string* s = std::get_if<std::string>(&v)) out += "'" + *s + "'";
  }
  return out + "]";
}

}  // namespace

int main() {
  mproc::Queue<Item> q;
  mproc::Process p(f, q);
  p.start();
  std::printf("%s\n", repr(q.get()).c_str());   // prints "[42, None, 'hello']"
  p.join();
  return p.exitcode() == 0 ? 0 : 1;
}
