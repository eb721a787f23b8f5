// mpi/protocol — what an executor's root and its worker ranks say to each other over MPI.
// Private to mproc::mpi.
//
// A message's tag says what it is: kStopTag (no payload) ends a worker's service of that
// communicator; an even tag >= kFirstTaskTag carries a batch of tasks (the worker_protocol
// WireTasks the process engine sends, encoded with the same codec), and the worker answers
// with a ResultBatch on that tag + 1, so executors sharing one communicator (world mode)
// each hear their own answers.
#pragma once

#include <cstdint>
#include <vector>

#include "exec/worker_protocol.hpp"

namespace mproc::detail {

inline constexpr int kStopTag = 1;
inline constexpr int kFirstTaskTag = 2;

struct ResultBatch {
  std::vector<WireResult> results;
  /// The time the worker spent on these tasks: tells the root how many to keep queued there.
  std::uint64_t busy_ns = 0;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(results, busy_ns);
  }
};

}  // namespace mproc::detail
