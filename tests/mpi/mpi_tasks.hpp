// Tasks the mproc::mpi tests run on worker ranks (plain functions: named across ranks).
#pragma once

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <unistd.h>

#include <mpi.h>

namespace mproc::testing::mpi {

inline int square(int x) { return x * x; }
inline std::string join_words(std::string a, int times, std::string b) {
  std::string out;
  for (int i = 0; i < times; ++i) out += a;
  return out + b;
}
inline void nothing() {}
inline int world_rank() {
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}
inline int process_id() { return static_cast<int>(::getpid()); }
/// Sleeps `ms` milliseconds, then returns it.
inline int nap(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
inline int fail_out_of_range(int x) {
  if (x >= 0) throw std::out_of_range("index " + std::to_string(x) + " is out of range");
  return x;
}
struct CustomFailure : std::exception {
  const char* what() const noexcept override { return "a failure of the program's own type"; }
};
inline int fail_custom(int) { throw CustomFailure(); }
/// Fails on 13 only.
inline int square_but_13(int x) {
  if (x == 13) throw std::invalid_argument("13 is unlucky");
  return x * x;
}
/// True when this rank was started by MPI_Comm_spawn.
inline bool spawned() {
  MPI_Comm parent = MPI_COMM_NULL;
  MPI_Comm_get_parent(&parent);
  return parent != MPI_COMM_NULL;
}

}  // namespace mproc::testing::mpi
