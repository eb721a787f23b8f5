#include "mproc/detail/code_identity.hpp"

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <link.h>
#include <mutex>
#include <string>
#include <string_view>
#include <sys/stat.h>
#include <vector>

#include "mproc/error.hpp"

namespace mproc::detail {

namespace {

// One loaded module: its identity, its load bias, and where its executable code is.
struct Module {
  std::uint64_t key = 0;
  std::uintptr_t bias = 0;
  std::vector<std::pair<std::uintptr_t, std::uintptr_t>> code;  // [begin, end) of PF_X segments
  std::string name;

  bool contains_code(std::uintptr_t address) const noexcept {
    return std::any_of(code.begin(), code.end(),
                       [&](const auto& range) { return range.first <= address && address < range.second; });
  }
};

constexpr std::uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
constexpr std::uint64_t kFnvPrime = 0x100000001b3ULL;

std::uint64_t fnv1a(const void* data, std::size_t size, std::uint64_t hash = kFnvOffset) noexcept {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < size; ++i) hash = (hash ^ bytes[i]) * kFnvPrime;
  return hash;
}

// The GNU build id note of a loaded module, read from its mapped PT_NOTE segments.
std::string_view build_id_of(const dl_phdr_info& info) noexcept {
  for (int i = 0; i < info.dlpi_phnum; ++i) {
    const ElfW(Phdr)& header = info.dlpi_phdr[i];
    if (header.p_type != PT_NOTE) continue;
    const auto* at = reinterpret_cast<const unsigned char*>(info.dlpi_addr + header.p_vaddr);
    const auto* end = at + header.p_memsz;
    const std::size_t align = header.p_align >= 8 ? 8 : 4;
    auto padded = [align](std::size_t n) { return (n + align - 1) & ~(align - 1); };
    while (at + sizeof(ElfW(Nhdr)) <= end) {
      ElfW(Nhdr) note;
      std::memcpy(&note, at, sizeof note);
      const unsigned char* name = at + sizeof note;
      const unsigned char* desc = name + padded(note.n_namesz);
      if (desc + note.n_descsz > end) break;
      if (note.n_type == NT_GNU_BUILD_ID && note.n_namesz == 4 && std::memcmp(name, "GNU", 4) == 0)
        return {reinterpret_cast<const char*>(desc), note.n_descsz};
      at = desc + padded(note.n_descsz);
    }
  }
  return {};
}

// A module built without a build id is identified by its file (device, inode, size and
// modification time): the same file is the same code. Weaker than a build id — a file
// rebuilt in place within the same nanosecond and size would pass — and documented so.
std::uint64_t file_identity_of(const char* path) noexcept {
  struct stat status {};
  if (::stat(path, &status) != 0) return 0;
  std::uint64_t fields[] = {static_cast<std::uint64_t>(status.st_dev), static_cast<std::uint64_t>(status.st_ino),
                            static_cast<std::uint64_t>(status.st_size),
                            static_cast<std::uint64_t>(status.st_mtim.tv_sec),
                            static_cast<std::uint64_t>(status.st_mtim.tv_nsec)};
  return fnv1a(fields, sizeof fields, fnv1a("file", 4));
}

int collect_module(dl_phdr_info* info, std::size_t, void* out) noexcept {
  auto& modules = *static_cast<std::vector<Module>*>(out);
  Module module;
  module.bias = info->dlpi_addr;
  // The first module glibc reports is the executable, with an empty name.
  module.name = info->dlpi_name && *info->dlpi_name ? info->dlpi_name : (modules.empty() ? "/proc/self/exe" : "");
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& header = info->dlpi_phdr[i];
    if (header.p_type == PT_LOAD && (header.p_flags & PF_X) != 0)
      module.code.emplace_back(info->dlpi_addr + header.p_vaddr, info->dlpi_addr + header.p_vaddr + header.p_memsz);
  }
  std::string_view build_id = build_id_of(*info);
  if (!build_id.empty()) {
    module.key = fnv1a(build_id.data(), build_id.size(), fnv1a("gnu-build-id", 12));
  } else if (!module.name.empty()) {
    module.key = file_identity_of(module.name.c_str());
  }
  // 0 names nothing: a module that cannot be identified cannot be named.
  if (module.key != 0 && !module.code.empty()) modules.push_back(std::move(module));
  return 0;
}

// The modules of this process, read once and again whenever a lookup misses (a library
// dlopen()ed since). A module that was dlclose()d stays listed until then: naming code in
// it is already undefined behaviour in the caller.
class ModuleTable {
 public:
  static ModuleTable& instance() {
    // Leaked on purpose: tasks may be named during static destruction.
    static auto* table = new ModuleTable;
    return *table;
  }

  CodeRef name(std::uintptr_t address) {
    std::lock_guard lock(mutex_);
    for (int attempt = 0; attempt < 2; ++attempt) {
      for (const auto& module : modules_)
        if (module.contains_code(address)) return CodeRef{module.key, address - module.bias};
      refresh();
    }
    char text[160];
    std::snprintf(text, sizeof text,
                  "mproc: address %#" PRIxPTR " is not in the code of any loaded module, so no other process can run it",
                  address);
    throw SerializationError(text);
  }

  std::uintptr_t locate(const CodeRef& ref) {
    std::lock_guard lock(mutex_);
    for (int attempt = 0; attempt < 2; ++attempt) {
      for (const auto& module : modules_) {
        if (module.key != ref.module) continue;
        std::uintptr_t address = module.bias + static_cast<std::uintptr_t>(ref.offset);
        if (module.contains_code(address)) return address;
        throw SerializationError("mproc: the task names offset " + std::to_string(ref.offset) + " in module " +
                                 module.name + ", which holds no code there; refusing to run it");
      }
      refresh();
    }
    char text[300];
    std::snprintf(text, sizeof text,
                  "mproc: this process cannot run the task's function: no loaded module has the identity "
                  "%#018" PRIx64 " (its build id). The worker runs a different build of the program, or lacks the "
                  "shared library the function is in.",
                  ref.module);
    throw SerializationError(text);
  }

  std::uint64_t generation() const noexcept { return generation_.load(std::memory_order_acquire); }

 private:
  ModuleTable() { refresh(); }

  // Requires mutex_ (or the constructor).
  void refresh() {
    std::vector<Module> modules;
    dl_iterate_phdr(collect_module, &modules);
    modules_ = std::move(modules);
    generation_.fetch_add(1, std::memory_order_release);
  }

  std::mutex mutex_;
  std::vector<Module> modules_;
  std::atomic<std::uint64_t> generation_{0};
};

// Most tasks name the same two functions (the user's and its invoker) over and over: one
// remembered answer per thread and direction spares the lock.
struct RecentName {
  std::uint64_t generation = 0;
  std::uintptr_t address = 0;
  CodeRef ref;
};
thread_local RecentName recent_named[2];
thread_local RecentName recent_resolved[2];

}  // namespace

CodeRef code_ref_of(const void* address) {
  auto& table = ModuleTable::instance();
  const auto value = reinterpret_cast<std::uintptr_t>(address);
  const std::uint64_t generation = table.generation();
  for (auto& recent : recent_named)
    if (recent.address == value && recent.generation == generation) return recent.ref;
  CodeRef ref = table.name(value);
  recent_named[1] = recent_named[0];
  recent_named[0] = RecentName{table.generation(), value, ref};
  return ref;
}

const void* resolve_code(const CodeRef& ref) {
  auto& table = ModuleTable::instance();
  const std::uint64_t generation = table.generation();
  for (auto& recent : recent_resolved)
    if (recent.ref == ref && recent.generation == generation && recent.address != 0)
      return reinterpret_cast<const void*>(recent.address);
  std::uintptr_t address = table.locate(ref);
  recent_resolved[1] = recent_resolved[0];
  recent_resolved[0] = RecentName{table.generation(), address, ref};
  return reinterpret_cast<const void*>(address);
}

}  // namespace mproc::detail
