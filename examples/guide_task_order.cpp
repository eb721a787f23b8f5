// guide_task_order — the tutorial claim "both Process and Pool use a FIFO scheduler",
// measured: the order in which a Pool starts, finishes and delivers tasks, for map and for
// imap_unordered (docs/guide.md, "Tutorial claims, measured").
//
// Eight tasks on Pool(2), chunksize 1; tasks 0 and 4 wait 60 ms, the others 10 ms. Each task
// returns when it started and ended (steady_clock is one clock for every process here).
#include <mproc/mproc.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

struct Span {
  int index;
  long long started_ns;
  long long ended_ns;
};

long long now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Span timed_task(int index) {
  const long long started = now_ns();
  std::this_thread::sleep_for(std::chrono::milliseconds(index % 4 == 0 ? 60 : 10));
  return {index, started, now_ns()};
}

std::string order_by(std::vector<Span> spans, long long Span::*when) {
  std::stable_sort(spans.begin(), spans.end(), [when](const Span& a, const Span& b) { return a.*when < b.*when; });
  std::string out;
  for (const Span& s : spans) out += (out.empty() ? "" : " ") + std::to_string(s.index);
  return out;
}

std::string delivered(const std::vector<Span>& spans) {
  std::string out;
  for (const Span& s : spans) out += (out.empty() ? "" : " ") + std::to_string(s.index);
  return out;
}

}  // namespace

int main() {
  mproc::Pool pool(2);
  std::vector<int> inputs(8);
  std::iota(inputs.begin(), inputs.end(), 0);

  const std::vector<Span> by_map = pool.map(timed_task, inputs, 1);
  std::printf("map:            started %s | finished %s | delivered %s\n", order_by(by_map, &Span::started_ns).c_str(),
              order_by(by_map, &Span::ended_ns).c_str(), delivered(by_map).c_str());

  std::vector<Span> by_imap;
  for (Span s : pool.imap_unordered(timed_task, inputs, 1)) by_imap.push_back(s);
  std::printf("imap_unordered: started %s | finished %s | delivered %s\n",
              order_by(by_imap, &Span::started_ns).c_str(), order_by(by_imap, &Span::ended_ns).c_str(),
              delivered(by_imap).c_str());
  return 0;
}
