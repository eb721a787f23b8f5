#include <cerrno>
#include "support/leak_check.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char** environ;

namespace mproc::testing {

std::vector<std::string> open_fds() {
  std::vector<std::string> fds;
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return fds;
  int own = ::dirfd(dir);
  while (dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    int fd = std::atoi(entry->d_name);
    if (fd == own) continue;
    char target[512] = {};
    std::string path = std::string("/proc/self/fd/") + entry->d_name;
    ssize_t n = ::readlink(path.c_str(), target, sizeof target - 1);
    fds.push_back(std::string(entry->d_name) + " -> " + (n > 0 ? std::string(target, static_cast<size_t>(n)) : "?"));
  }
  ::closedir(dir);
  std::sort(fds.begin(), fds.end());
  return fds;
}

std::vector<int> child_pids() {
  std::vector<int> pids;
  DIR* tasks = ::opendir("/proc/self/task");
  if (!tasks) return pids;
  while (dirent* task = ::readdir(tasks)) {
    if (task->d_name[0] == '.') continue;
    std::ifstream children(std::string("/proc/self/task/") + task->d_name + "/children");
    for (int pid; children >> pid;) pids.push_back(pid);
  }
  ::closedir(tasks);
  std::sort(pids.begin(), pids.end());
  return pids;
}

bool has_zombie_child() {
  siginfo_t info{};
  // WNOWAIT: look without reaping.
  if (::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0) return false;  // ECHILD: no children
  return info.si_pid != 0;
}

void LeakCheckedTest::SetUp() { fds_before_ = open_fds(); }

void LeakCheckedTest::TearDown() {
  EXPECT_EQ(open_fds(), fds_before_) << "descriptor leak";
  EXPECT_FALSE(has_zombie_child()) << "a child was left unreaped";
}

namespace {
const char* kHelperVariable = "MPROC_TEST_HELPER";
const char* kHelperArgVariable = "MPROC_TEST_HELPER_ARG";
}  // namespace

HelperRegistration::HelperRegistration(const char* name, int (*body)(const std::string& arg)) {
  const char* wanted = std::getenv(kHelperVariable);
  if (!wanted || std::strcmp(wanted, name) != 0) return;
  const char* arg = std::getenv(kHelperArgVariable);
  ::unsetenv(kHelperVariable);
  std::exit(body(arg ? arg : ""));
}

HelperResult run_program(const std::string& path, const std::vector<std::string>& extra_environment) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
  std::vector<std::string> env_storage;
  for (char** e = environ; *e; ++e) env_storage.emplace_back(*e);
  env_storage.insert(env_storage.end(), extra_environment.begin(), extra_environment.end());
  std::vector<char*> env;
  for (auto& entry : env_storage) env.push_back(entry.data());
  env.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  std::string program = path;
  char* argv[] = {program.data(), nullptr};
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, program.c_str(), &actions, nullptr, argv, env.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  if (rc != 0) {
    ::close(out[0]);
    throw std::runtime_error("posix_spawn failed");
  }
  HelperResult result{};
  char buffer[4096];
  for (;;) {
    ssize_t n = ::read(out[0], buffer, sizeof buffer);
    if (n > 0) {
      result.output.append(buffer, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  ::close(out[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exitcode = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  return result;
}

HelperResult run_helper(const std::string& name, const std::string& arg) {
  return run_program("/proc/self/exe",
                     {std::string(kHelperVariable) + "=" + name, std::string(kHelperArgVariable) + "=" + arg});
}

SubreaperScope::SubreaperScope() { ::prctl(PR_SET_CHILD_SUBREAPER, 1); }
SubreaperScope::~SubreaperScope() { ::prctl(PR_SET_CHILD_SUBREAPER, 0); }
SubreaperScope become_subreaper() { return {}; }

bool eventually(const std::function<bool()>& predicate, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!predicate()) {
    if (std::chrono::steady_clock::now() > deadline) return predicate();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

bool process_running(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return false;
  std::string line;
  std::getline(stat, line);
  auto close_paren = line.rfind(')');
  if (close_paren == std::string::npos || close_paren + 2 >= line.size()) return false;
  char state = line[close_paren + 2];
  return state != 'Z' && state != 'X';
}

}  // namespace mproc::testing

namespace mproc::testing {

std::map<int, int> reap_orphans(const std::vector<int>& before) {
  std::map<int, int> statuses;
  for (;;) {
    std::vector<int> orphans;
    for (int pid : child_pids())
      if (!std::binary_search(before.begin(), before.end(), pid)) orphans.push_back(pid);
    if (orphans.empty()) return statuses;
    for (int pid : orphans) {
      int status = 0;
      pid_t reaped;
      while ((reaped = ::waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
      }
      if (reaped == pid) statuses[pid] = status;
    }
  }
}

}  // namespace mproc::testing
