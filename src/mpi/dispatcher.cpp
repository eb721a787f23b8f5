// The root side of mproc::mpi: one thread per executor makes its MPI calls (so the
// executor works at MPI_THREAD_SERIALIZED too), hands queued TaskSpecs to the worker ranks
// in batches and completes them from the answers, on that thread, as the process engine
// completes its own.
#include "mproc/detail/mpi_dispatcher.hpp"

#include <algorithm>
#include <climits>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <sched.h>
#include <thread>
#include <unistd.h>
#include <unordered_map>

#include "backoff.hpp"
#include "mproc/error.hpp"
#include "mproc/imap_iterator.hpp"
#include "protocol.hpp"
#include "runtime.hpp"

namespace mproc::detail {

namespace {

// How many tasks to keep queued on a worker: from 1 (tasks of milliseconds or more: as
// mpi4py, one at a time, so the rest stay cancellable and go to whoever is free) up to
// kMaxDepth (tiny tasks: the worker never waits for the next message).
constexpr int kFirstDepth = 2;
constexpr int kMaxDepth = 1024;
constexpr std::size_t kMaxBatch = 256;
constexpr std::uint64_t kFastTaskNs = 200'000;
constexpr std::uint64_t kSlowTaskNs = 5'000'000;

struct WorkerSlot {
  int rank = 0;
  int in_flight = 0;
  int depth = kFirstDepth;
};

struct Outgoing {
  MPI_Request request = MPI_REQUEST_NULL;
  std::vector<std::byte> buffer;
};

struct OpenStream {
  std::function<void(bool)> drain;
  std::function<void()> abandon;
};

}  // namespace

class MpiDispatcherCore {
 public:
  explicit MpiDispatcherCore(MpiChannel channel) : channel_(std::move(channel)), owner_(::getpid()) {
    for (int rank : channel_.workers) {
      workers_.push_back(WorkerSlot{rank});
      if (static_cast<std::size_t>(rank) >= slot_of_rank_.size()) slot_of_rank_.resize(rank + 1, -1);
      slot_of_rank_[rank] = static_cast<int>(workers_.size() - 1);
    }
  }

  // ---- any thread ----

  void push(std::vector<TaskSpec>& tasks, bool from_stream) {
    std::lock_guard lock(mutex_);
    if (broken_) std::rethrow_exception(broken_);
    if (closed_ && !from_stream) throw Error("cannot schedule new futures after shutdown");
    for (auto& task : tasks) {
      // Waiting for such a future from a done callback would wait for this very thread.
      if (task.control) task.control->set_completer(this);
      pending_.push_back(std::move(task));
    }
    wake_locked();
  }

  std::uint64_t open_stream(std::function<void(bool)> drain, std::function<void()> abandon) {
    std::lock_guard lock(mutex_);
    if (broken_) std::rethrow_exception(broken_);
    if (closed_) throw Error("cannot schedule new futures after shutdown");
    std::uint64_t id = next_stream_++;
    streams_.emplace(id, OpenStream{std::move(drain), std::move(abandon)});
    return id;
  }
  void close_stream(std::uint64_t id) {
    std::lock_guard lock(mutex_);
    streams_.erase(id);
    wake_locked();
  }

  void cancel_pending() {
    std::vector<std::shared_ptr<StateCore>> cancelled;
    std::vector<std::function<void()>> abandons;
    {
      std::lock_guard lock(mutex_);
      std::deque<TaskSpec> kept;
      for (auto& task : pending_) {
        if (task.control) {
          cancelled.push_back(std::move(task.control));
        } else {
          kept.push_back(std::move(task));  // a map chunk: its map's abandon flag drops it
        }
      }
      pending_.swap(kept);
      for (auto& [id, stream] : streams_)
        if (stream.abandon) abandons.push_back(stream.abandon);
    }
    // Outside the lock: cancelling runs done callbacks, which may submit.
    for (auto& abandon : abandons) abandon();
    for (auto& control : cancelled) control->cancel();
  }

  void close() {
    std::lock_guard lock(mutex_);
    closed_ = true;
    wake_locked();
  }

  void join() {
    if (std::this_thread::get_id() == thread_id_)
      throw Error("mproc::mpi: shutdown(wait=true) from the executor's own completion thread (a done callback) "
                  "would wait for itself");
    {
      std::lock_guard lock(mutex_);
      if (!closed_) throw Error("mproc::mpi: join before close");
    }
    // What a map accepted before shutdown is finished (ProcessPoolExecutor's rule): read the
    // rest of each open map's input, on this thread.
    for (;;) {
      std::function<void(bool)> drain;
      {
        std::lock_guard lock(mutex_);
        for (auto& [id, stream] : streams_)
          if (!drained_.contains(id)) {
            drained_.insert(id);
            drain = stream.drain;
            break;
          }
      }
      if (!drain) break;
      drain(true);
    }
    std::lock_guard lock(join_mutex_);
    if (thread_.joinable()) thread_.join();
  }

  void start(const std::shared_ptr<MpiDispatcherCore>& self) {
    thread_ = std::thread([self] { self->run(); });
    thread_id_ = thread_.get_id();
  }
  void detach_if_own_thread() {
    if (std::this_thread::get_id() == thread_id_) thread_.detach();
  }

  int processes() const noexcept { return static_cast<int>(workers_.size()); }
  void check_caller() const {
    if (::getpid() != owner_)
      throw Error("mproc::mpi: an executor can only be used by the process that made it");
  }

 private:
  void wake_locked() {
    posted_.store(true, std::memory_order_release);
    cv_.notify_one();
  }

  // ---- the dispatcher thread ----

  void run() {
    current_completer() = this;
    PollBackoff backoff;
    try {
      for (;;) {
        std::vector<std::pair<std::size_t, std::vector<TaskSpec>>> batches;
        std::vector<Completion> dropped;
        bool finish = false;
        {
          std::unique_lock lock(mutex_);
          posted_.store(false, std::memory_order_relaxed);
          assign_locked(batches, dropped);
          finish = closed_ && pending_.empty() && streams_.empty() && batches.empty() && dropped.empty() &&
                   in_flight_.empty() && outgoing_.empty();
          if (!finish && batches.empty() && dropped.empty() && in_flight_.empty() && outgoing_.empty()) {
            // Nothing out there. Shortly after an answer the caller is likely to submit again
            // (a round trip): look for it without a wake-up for a while, then sleep until
            // there is something to send.
            if (backoff.next().count() == 0) {
              lock.unlock();
              ::sched_yield();
              continue;
            }
            cv_.wait(lock, [&] { return posted_.load(std::memory_order_relaxed); });
            continue;
          }
        }
        for (auto& done : dropped) done({}, abandoned_chunk_error());
        bool activity = !batches.empty() || !dropped.empty();
        for (auto& [slot, tasks] : batches) send_batch(slot, tasks);
        reap_sends();
        activity |= receive_results();
        if (finish) break;
        if (activity) {
          backoff.reset();
          continue;
        }
        // Latency matters while each rank holds at most one task (a round trip); with more
        // queued, the answers come as the ranks compute and a spinning root would slow them.
        auto pause = backoff.next(in_flight_.size() <= workers_.size());
        if (pause.count() == 0) {
          ::sched_yield();
        } else {
          std::unique_lock lock(mutex_);
          cv_.wait_for(lock, pause, [&] { return posted_.load(std::memory_order_relaxed); });
        }
      }
      end_channel();
    } catch (...) {
      fail_everything(std::current_exception());
    }
  }

  // Which worker gets which pending tasks now (under the lock: cancel_pending sees the rest).
  void assign_locked(std::vector<std::pair<std::size_t, std::vector<TaskSpec>>>& batches,
                     std::vector<Completion>& dropped) {
    const std::size_t count = workers_.size();
    for (std::size_t turn = 0; turn < count && !pending_.empty(); ++turn) {
      std::size_t slot = (next_slot_ + turn) % count;
      WorkerSlot& worker = workers_[slot];
      int room = worker.depth - worker.in_flight;
      // Top up in halves: fewer, bigger messages, and the worker still never runs dry.
      if (room <= 0 || (worker.in_flight > 0 && room < worker.depth / 2)) continue;
      std::size_t share = (pending_.size() + count - 1) / count;
      std::size_t take = std::min({static_cast<std::size_t>(room), share, kMaxBatch});
      std::vector<TaskSpec> batch;
      while (batch.size() < take && !pending_.empty()) {
        TaskSpec task = std::move(pending_.front());
        pending_.pop_front();
        if (task.abandoned && task.abandoned->load(std::memory_order_relaxed)) {
          dropped.push_back(std::move(task.done));
          continue;
        }
        if (task.control && !task.control->set_running()) continue;  // cancelled: already complete
        batch.push_back(std::move(task));
      }
      if (batch.empty()) continue;
      worker.in_flight += static_cast<int>(batch.size());
      batches.emplace_back(slot, std::move(batch));
    }
    next_slot_ = (next_slot_ + 1) % std::max<std::size_t>(count, 1);
  }

  void send_batch(std::size_t slot, std::vector<TaskSpec>& tasks) {
    std::vector<WireTask> wire;
    wire.reserve(tasks.size());
    for (auto& task : tasks) {
      std::uint64_t id = next_id_++;
      wire.push_back(WireTask{id, 0, task.invoker, task.function, std::move(task.args), false});
      in_flight_.emplace(id, InFlight{std::move(task.done), slot});
    }
    Outgoing out;
    dumps(wire, out.buffer);
    if (out.buffer.size() > static_cast<std::size_t>(INT_MAX)) {
      // MPI counts in int: fail these tasks, not the executor.
      auto error = std::make_exception_ptr(SerializationError("mproc::mpi: a batch of tasks is over 2 GiB"));
      for (auto& task : wire) complete(task.id, {}, error);
      return;
    }
    outgoing_.push_back(std::move(out));
    auto& sent = outgoing_.back();
    auto guard = mpi_guard();
    check_mpi(MPI_Isend(sent.buffer.data(), static_cast<int>(sent.buffer.size()), MPI_BYTE, workers_[slot].rank,
                        channel_.task_tag, channel_.comm, &sent.request),
              "MPI_Isend");
  }

  void reap_sends() {
    while (!outgoing_.empty()) {
      int done = 0;
      {
        auto guard = mpi_guard();
        check_mpi(MPI_Test(&outgoing_.front().request, &done, MPI_STATUS_IGNORE), "MPI_Test");
      }
      if (!done) return;  // sends to one rank complete in order; the front is the oldest
      outgoing_.pop_front();
    }
  }

  bool receive_results() {
    bool any = false;
    for (;;) {
      int flag = 0;
      MPI_Status status;
      {
        auto guard = mpi_guard();
        check_mpi(MPI_Iprobe(MPI_ANY_SOURCE, channel_.task_tag + 1, channel_.comm, &flag, &status), "MPI_Iprobe");
        if (!flag) return any;
        int count = 0;
        MPI_Get_count(&status, MPI_BYTE, &count);
        inbox_.resize(static_cast<std::size_t>(count));
        check_mpi(MPI_Recv(inbox_.data(), count, MPI_BYTE, status.MPI_SOURCE, status.MPI_TAG, channel_.comm,
                           MPI_STATUS_IGNORE),
                  "MPI_Recv");
      }
      any = true;
      auto batch = loads<ResultBatch>(inbox_);
      if (status.MPI_SOURCE >= 0 && static_cast<std::size_t>(status.MPI_SOURCE) < slot_of_rank_.size() &&
          slot_of_rank_[status.MPI_SOURCE] >= 0 && !batch.results.empty()) {
        WorkerSlot& worker = workers_[slot_of_rank_[status.MPI_SOURCE]];
        std::uint64_t per_task = batch.busy_ns / batch.results.size();
        if (per_task < kFastTaskNs) {
          worker.depth = std::min(worker.depth * 2, kMaxDepth);
        } else if (per_task > kSlowTaskNs) {
          worker.depth = 1;
        }
      }
      for (auto& result : batch.results) {
        if (result.ok) {
          complete(result.id, result.payload, nullptr);
        } else {
          complete(result.id, {}, rebuild_exception(result.failure));
        }
      }
    }
  }

  void complete(std::uint64_t id, std::span<const std::byte> payload, std::exception_ptr error) {
    auto found = in_flight_.find(id);
    if (found == in_flight_.end()) return;
    InFlight entry = std::move(found->second);
    in_flight_.erase(found);
    --workers_[entry.slot].in_flight;
    entry.done(payload, std::move(error));
  }

  void end_channel() {
    if (channel_.end == MpiChannel::End::keep) return;
    auto guard = mpi_guard();
    for (const auto& worker : workers_)
      check_mpi(MPI_Send(nullptr, 0, MPI_BYTE, worker.rank, kStopTag, channel_.comm), "MPI_Send (stop)");
    if (channel_.end == MpiChannel::End::stop_and_disconnect) {
      check_mpi(MPI_Comm_disconnect(&channel_.comm), "MPI_Comm_disconnect");
    } else {
      check_mpi(MPI_Comm_free(&channel_.comm), "MPI_Comm_free");
    }
  }

  // MPI failed: every accepted task fails with the reason, and so does every later submit.
  void fail_everything(std::exception_ptr error) {
    std::deque<TaskSpec> pending;
    {
      std::lock_guard lock(mutex_);
      broken_ = error;
      pending.swap(pending_);
    }
    for (auto& [id, entry] : in_flight_) entry.done({}, error);
    in_flight_.clear();
    for (auto& task : pending) task.done({}, error);
    // The requests may never complete: their buffers are leaked rather than freed under MPI.
    for (auto& out : outgoing_) new std::vector<std::byte>(std::move(out.buffer));
    outgoing_.clear();
  }

  struct InFlight {
    Completion done;
    std::size_t slot;
  };

  MpiChannel channel_;
  const pid_t owner_;
  std::vector<WorkerSlot> workers_;
  std::vector<int> slot_of_rank_;

  std::mutex mutex_;
  std::condition_variable cv_;
  std::atomic<bool> posted_{false};
  std::deque<TaskSpec> pending_;
  bool closed_ = false;
  std::exception_ptr broken_;
  std::map<std::uint64_t, OpenStream> streams_;
  std::set<std::uint64_t> drained_;
  std::uint64_t next_stream_ = 1;

  std::mutex join_mutex_;
  std::thread thread_;
  std::thread::id thread_id_;

  // The dispatcher thread's own.
  std::size_t next_slot_ = 0;
  std::uint64_t next_id_ = 1;
  std::unordered_map<std::uint64_t, InFlight> in_flight_;
  std::deque<Outgoing> outgoing_;
  std::vector<std::byte> inbox_;
};

MpiStream::~MpiStream() { core_->close_stream(id_); }

void MpiStream::submit(std::vector<TaskSpec> tasks) { core_->push(tasks, /*from_stream=*/true); }

MpiDispatcher::MpiDispatcher(MpiChannel channel) : core_(std::make_shared<MpiDispatcherCore>(std::move(channel))) {
  core_->start(core_);
}

MpiDispatcher::~MpiDispatcher() {
  core_->close();
  core_->detach_if_own_thread();
  try {
    core_->join();
  } catch (...) {
    // Only from the dispatcher's own thread, which was detached: it finishes by itself.
  }
}

void MpiDispatcher::submit(TaskSpec task) {
  std::vector<TaskSpec> one;
  one.push_back(std::move(task));
  core_->push(one, false);
}
void MpiDispatcher::submit(std::vector<TaskSpec> tasks) { core_->push(tasks, false); }

std::shared_ptr<MpiStream> MpiDispatcher::open_stream(std::function<void(bool)> drain,
                                                       std::function<void()> abandon) {
  std::uint64_t id = core_->open_stream(std::move(drain), std::move(abandon));
  return std::make_shared<MpiStream>(core_, id);
}

void MpiDispatcher::cancel_pending() { core_->cancel_pending(); }
void MpiDispatcher::close() { core_->close(); }
void MpiDispatcher::join() { core_->join(); }
int MpiDispatcher::processes() const noexcept { return core_->processes(); }
void MpiDispatcher::check_caller() const { core_->check_caller(); }

}  // namespace mproc::detail
