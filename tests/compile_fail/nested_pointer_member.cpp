// Must NOT compile: the pointer is two aggregates and an array deep, and the struct is a pool
// task's argument. Members are inspected recursively.
#include <mproc/mproc.hpp>

struct Name {
  const char* text = nullptr;
};
struct Entry {
  int count = 0;
  Name names[2];
};
struct Batch {
  Entry entries[3];
  long total = 0;
};

int size_of(Batch batch) { return static_cast<int>(batch.total); }

int main() {
  mproc::Pool pool(1);
  return pool.apply(size_of, Batch{});
}
