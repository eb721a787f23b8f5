// Progress bars and worker insights (docs/guide.md, "Seeing and bounding the work"): two maps
// in flight at once, each with its bar, one over an endless input; a map that fails; then the
// pool's insights. Bars go to stderr (a terminal: bars redrawn in place; otherwise lines);
// the results and the insights table go to stdout.
#include <mproc/mproc.hpp>

#include <chrono>
#include <iostream>
#include <numeric>
#include <ranges>
#include <stdexcept>
#include <thread>
#include <vector>

namespace {

int slow_square(int x) {
  std::this_thread::sleep_for(std::chrono::milliseconds(4));
  return x * x;
}

int refuse_150(int x) {
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  if (x == 150) throw std::invalid_argument("item 150 is refused");
  return x;
}

}  // namespace

int main() {
  mproc::Pool pool(2);
  std::vector<int> items(300);
  std::iota(items.begin(), items.end(), 0);

  // Two bars at once: a sized map (a total, an ETA) and an endless stream (a count).
  long sum = 0;
  {
    auto squares = pool.imap(slow_square, items, 4, mproc::Progress{.label = "squares"});
    auto stream = pool.imap_unordered(slow_square, std::views::iota(0), 2, mproc::Progress{.label = "stream "});
    for (int s : squares) sum += s;
    int taken = 0;
    for (int s : stream) {
      sum += s % 7;
      if (++taken == 120) break;
    }
  }  // the stream's iterator goes: its input is read no further (join() would read it all)
  std::cout << "squares and stream: " << sum << "\n";

  try {
    pool.map(refuse_150, items, 5, mproc::Progress{.label = "checked"});
  } catch (const std::invalid_argument& error) {
    std::cout << "checked: " << error.what() << "\n";
  }
  pool.close();
  pool.join();
  std::cout << pool.insights();
}
