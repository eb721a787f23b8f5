# Builds and runs the consumer project in this directory against mproc, in a fresh
# directory. Run by ctest (see consumers.cmake):
#   cmake -DMODE=<package|subdirectory|fetchcontent> -DMPROC_SOURCE_DIR=... -DMPROC_BINARY_DIR=...
#         -DWORK_DIR=... [-DSHARED=ON] [-DFRESH=ON] [-DGENERATOR=...] [-DCXX_COMPILER=...]
#         [-DBUILD_TYPE=...] [-DSANITIZE=address,undefined] -P run_consumer.cmake
# SHARED: mproc is (package) or is built as (subdirectory, fetchcontent) a shared library.
# package: installs mproc with `cmake --install MPROC_BINARY_DIR --prefix WORK_DIR/prefix`
#   (with FRESH=ON: from a fresh build of MPROC_SOURCE_DIR, library only), then
#   find_package()s it from there.
# subdirectory, fetchcontent: builds mproc from MPROC_SOURCE_DIR as a subproject.
cmake_minimum_required(VERSION 3.20)

foreach(var MODE MPROC_SOURCE_DIR MPROC_BINARY_DIR WORK_DIR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT BUILD_TYPE)
  set(BUILD_TYPE Release)
endif()
cmake_host_system_information(RESULT jobs QUERY NUMBER_OF_LOGICAL_CORES)

set(common_args "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}")
if(GENERATOR)
  list(APPEND common_args -G "${GENERATOR}")
endif()
if(CXX_COMPILER)
  list(APPEND common_args "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()
if(SHARED)
  list(APPEND common_args -DBUILD_SHARED_LIBS=ON)
  set(expected_type SHARED_LIBRARY)
else()
  list(APPEND common_args -DBUILD_SHARED_LIBS=OFF)
  set(expected_type STATIC_LIBRARY)
endif()
if(SANITIZE)
  # An mproc built with sanitizers needs their runtime in whatever links it.
  list(APPEND common_args "-DCMAKE_CXX_FLAGS=-fsanitize=${SANITIZE}"
                          "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=${SANITIZE}"
                          "-DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=${SANITIZE}")
endif()

# run(<what> <command...>): runs the command and fails the test, with its output, unless it
# exits 0 within `run_timeout` seconds. Leaves the command's combined output in `run_output`.
set(run_timeout 280)   # under the test's TIMEOUT, so that a hung step is killed by us
function(run what)
  message(STATUS "consumer ${MODE}: ${what}")
  execute_process(COMMAND ${ARGN}
                  RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE output
                  TIMEOUT ${run_timeout})
  if(NOT result EQUAL 0)
    string(REPLACE ";" " " command "${ARGN}")
    message("${output}")
    message(FATAL_ERROR "consumer ${MODE}: ${what} failed (${result}): ${command}")
  endif()
  set(run_output "${output}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
set(consumer_args -S "${CMAKE_CURRENT_LIST_DIR}" -B "${WORK_DIR}/build" ${common_args}
    "-DMPROC_CONSUMER_MODE=${MODE}" "-DMPROC_EXPECTED_TYPE=${expected_type}")

if(MODE STREQUAL "package")
  set(prefix "${WORK_DIR}/prefix")
  set(install_from "${MPROC_BINARY_DIR}")
  if(FRESH)
    set(install_from "${WORK_DIR}/mproc-build")
    run("configure mproc" ${CMAKE_COMMAND} -S "${MPROC_SOURCE_DIR}" -B "${install_from}"
        ${common_args} -DMPROC_BUILD_TESTS=OFF -DMPROC_BUILD_EXAMPLES=OFF
        -DMPROC_BUILD_BENCHMARKS=OFF)
    run("build mproc" ${CMAKE_COMMAND} --build "${install_from}" -j ${jobs})
  endif()
  run("install mproc to ${prefix}" ${CMAKE_COMMAND} --install "${install_from}" --prefix "${prefix}")

  # The installed tree: the library, the public headers, the package files and nothing else.
  file(GLOB config_files "${prefix}/lib*/cmake/mproc/*.cmake")
  foreach(name mprocConfig.cmake mprocConfigVersion.cmake mprocTargets.cmake)
    if(NOT config_files MATCHES "/${name}(;|$)")
      message(FATAL_ERROR "the install lacks lib/cmake/mproc/${name}: ${config_files}")
    endif()
  endforeach()
  if(NOT EXISTS "${prefix}/include/mproc/mproc.hpp")
    message(FATAL_ERROR "the install lacks include/mproc/mproc.hpp")
  endif()
  file(GLOB libraries "${prefix}/lib*/libmproc.*")
  if(NOT libraries)
    message(FATAL_ERROR "the install lacks lib/libmproc.*")
  endif()
  file(GLOB include_top "${prefix}/include/*")
  file(GLOB_RECURSE stray LIST_DIRECTORIES false "${prefix}/*test_*" "${prefix}/bin/*")
  if(NOT include_top STREQUAL "${prefix}/include/mproc" OR stray)
    message(FATAL_ERROR "the install holds more than mproc's library and headers: ${include_top} ${stray}")
  endif()
  list(APPEND consumer_args "-DCMAKE_PREFIX_PATH=${prefix}" "-DMPROC_EXPECTED_PREFIX=${prefix}"
       -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
elseif(MODE STREQUAL "subdirectory" OR MODE STREQUAL "fetchcontent")
  list(APPEND consumer_args "-DMPROC_SOURCE_DIR=${MPROC_SOURCE_DIR}")
else()
  message(FATAL_ERROR "unknown MODE '${MODE}'")
endif()

run("configure" ${CMAKE_COMMAND} ${consumer_args})
run("build" ${CMAKE_COMMAND} --build "${WORK_DIR}/build" -j ${jobs})
message("${run_output}")
string(REGEX MATCHALL "[^\n]*warning:[^\n]*" warnings "${run_output}")
if(warnings)
  string(REPLACE ";" "\n" warnings "${warnings}")
  message(FATAL_ERROR "consumer ${MODE}: the build is not clean:\n${warnings}")
endif()

# A subproject build must contain mproc's library and nothing else of mproc's.
file(GLOB_RECURSE stray LIST_DIRECTORIES false
     "${WORK_DIR}/build/*test_codec*" "${WORK_DIR}/build/*test_process*"
     "${WORK_DIR}/build/*/demo")
foreach(dir mproc-build _deps/mproc-build)
  foreach(sub tests examples bench)
    if(IS_DIRECTORY "${WORK_DIR}/build/${dir}/${sub}")
      list(APPEND stray "${WORK_DIR}/build/${dir}/${sub}")
    endif()
  endforeach()
endforeach()
if(stray)
  message(FATAL_ERROR "consumer ${MODE}: mproc built more than its library: ${stray}")
endif()

set(run_timeout 60)
run("run" "${WORK_DIR}/build/consumer")
message(STATUS "consumer ${MODE}: passed")
