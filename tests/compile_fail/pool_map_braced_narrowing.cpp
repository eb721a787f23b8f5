// Must NOT compile: the elements of a braced list convert to the task's parameter type as
// in any list-initialization, so a double is not narrowed to an int in silence (a named
// std::vector<double> is refused too; see apply_narrowing.cpp).
#include <mproc/mproc.hpp>

int square(int x) { return x * x; }

int main() {
  mproc::Pool pool(1);
  auto all = pool.map(square, {1.5, 2.5});
}
