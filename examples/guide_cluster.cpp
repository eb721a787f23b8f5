// The guide's "From one machine to a cluster": one task function under a ProcessPoolExecutor
// on this machine and under mproc::mpi::PoolExecutor on the ranks of an MPI job.
//
//   build/examples/guide_cluster                  # spawn mode: 2 spawned copies
//   mpiexec -n 3 build/examples/guide_cluster     # world mode: rank 0 drives ranks 1 and 2
//   mpiexec -n 33 --hostfile hosts build/examples/guide_cluster
#include <cstdio>
#include <numeric>
#include <ranges>
#include <vector>

#include <mproc/mpi.hpp>
#include <mproc/mproc.hpp>

namespace {

// A stand-in for minutes of CPU: the number of primes below `limit`.
long primes_below(long limit) {
  long count = 0;
  for (long n = 2; n < limit; ++n) {
    bool prime = true;
    for (long d = 2; d * d <= n && prime; ++d) prime = n % d != 0;
    count += prime ? 1 : 0;
  }
  return count;
}

template <class Executor>
long total(Executor& executor, const std::vector<long>& limits) {
  long sum = 0;
  for (long count : executor.map(primes_below, limits, std::nullopt, /*chunksize=*/2)) sum += count;
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  mproc::freeze_support(argc, argv);  // spawn mode: the copies serve here and never return
  std::vector<long> limits(16, 20'000);

  int ranks = 1;
  {
    mproc::mpi::thread_level();  // initialises MPI: asks the job its size
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  }
  // One machine (only rank 0 of a job would get here anyway; shown for the alone case).
  if (ranks == 1) {
    mproc::ProcessPoolExecutor local(2);
    std::printf("ProcessPoolExecutor(2): %ld primes\n", total(local, limits));
  }
  // MPI ranks: world mode under mpiexec -n N (ranks 1..N-1 serve in this constructor),
  // spawn mode when alone.
  mproc::mpi::PoolExecutor cluster({.max_workers = 2});
  std::printf("mproc::mpi::PoolExecutor (%s, %d workers): %ld primes\n", ranks > 1 ? "world mode" : "spawn mode",
              cluster.max_workers(), total(cluster, limits));
  return 0;
}
