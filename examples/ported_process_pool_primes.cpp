// ported_process_pool_primes — the concurrent.futures documentation's ProcessPoolExecutor
// example (Python original: ported_process_pool_primes.py).
//
//   Python                                      mproc
//   with ProcessPoolExecutor() as executor:     mproc::ProcessPoolExecutor executor;
//   executor.map(is_prime, PRIMES)              executor.map(is_prime, PRIMES) (lazy, ordered)
//   zip(PRIMES, ...)                            std::views::zip is C++23: an index instead
//   if __name__ == '__main__': main()           mproc::freeze_support() first (spawn /
//                                               forkserver), then main's body
#include <mproc/mproc.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <vector>

namespace {

const std::vector<std::int64_t> PRIMES = {
    112272535095293, 112582705942171, 112272535095293, 115280095190773, 115797848077099, 1099726899285419,
};

bool is_prime(std::int64_t n) {
  if (n < 2) return false;
  if (n == 2) return true;
  if (n % 2 == 0) return false;

  const auto sqrt_n = static_cast<std::int64_t>(std::floor(std::sqrt(static_cast<double>(n))));
  for (std::int64_t i = 3; i <= sqrt_n; i += 2)
    if (n % i == 0) return false;
  return true;
}

}  // namespace

int main() {
  mproc::freeze_support();
  mproc::ProcessPoolExecutor executor;
  std::size_t index = 0;
  for (bool prime : executor.map(is_prime, PRIMES))
    std::printf("%lld is prime: %s\n", static_cast<long long>(PRIMES[index++]), prime ? "True" : "False");
  return 0;
}
