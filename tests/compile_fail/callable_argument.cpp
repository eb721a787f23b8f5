// Must NOT compile: a std::function cannot cross a process boundary (Python: pickling a lambda
// fails). The message must say so, not advise adding a serialize() to std::function.
#include <mproc/mproc.hpp>

#include <functional>

int apply_twice(std::function<int(int)> f) { return f(f(1)); }

int main() {
  mproc::Pool pool(1);
  return pool.apply(apply_twice, std::function<int(int)>([](int x) { return x + 1; }));
}
