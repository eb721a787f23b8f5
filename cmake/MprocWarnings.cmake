# mproc_set_project_options(<target>): warnings (as errors when we are top level) and the
# optional sanitizers. Applied to mproc's own targets only, never forced on consumers.
function(mproc_set_project_options target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion)
  if(MPROC_WARNINGS_AS_ERRORS)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(MPROC_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=${MPROC_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
    target_link_options(${target} PRIVATE -fsanitize=${MPROC_SANITIZE})
  endif()
  if(MPROC_BUILD_FUZZERS AND CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    # Coverage feedback for libFuzzer from the library too; fuzz/ links the fuzzer's main.
    target_compile_options(${target} PRIVATE -fsanitize=fuzzer-no-link)
  endif()
endfunction()
