// Must NOT compile: a Queue (like a Lock or a Value) reaches a pool worker only through the
// pool's initializer or by inheritance, never as a task's argument. The message must say so.
#include <mproc/mproc.hpp>

void consume(mproc::Queue<int> queue) { queue.put(1); }

int main() {
  mproc::Queue<int> queue;
  mproc::Pool pool(1);
  pool.apply(consume, queue);
}
