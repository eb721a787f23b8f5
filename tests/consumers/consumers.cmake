# Consumer tests: a tiny program (tests/consumers/main.cpp) built against mproc the ways users
# do — find_package after `cmake --install`, add_subdirectory and FetchContent — each in a
# fresh directory under the build tree. Included from tests/CMakeLists.txt.
#
# They build mproc again, so they run serially (RUN_SERIAL): a compiler in parallel would
# load this 2-core machine under the timing-sensitive unit tests.

# mproc_add_consumer_test(<name> <mode> [SHARED] [FRESH])
#   SHARED: the library is a shared one. FRESH (package mode): install a fresh build of the
#   sources rather than this build.
function(mproc_add_consumer_test name mode)
  cmake_parse_arguments(ARG "SHARED;FRESH" "" "" ${ARGN})
  set(shared OFF)
  set(fresh OFF)
  if(ARG_SHARED)
    set(shared ON)
  endif()
  if(ARG_FRESH)
    set(fresh ON)
  endif()
  add_test(NAME consumer_${name}
           COMMAND ${CMAKE_COMMAND}
                   "-DMODE=${mode}"
                   "-DSHARED=${shared}"
                   "-DFRESH=${fresh}"
                   "-DMPROC_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
                   "-DMPROC_BINARY_DIR=${PROJECT_BINARY_DIR}"
                   "-DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/consumers/${name}"
                   "-DGENERATOR=${CMAKE_GENERATOR}"
                   "-DCXX_COMPILER=${CMAKE_CXX_COMPILER}"
                   "-DBUILD_TYPE=${CMAKE_BUILD_TYPE}"
                   "-DSANITIZE=${MPROC_SANITIZE}"
                   -P ${CMAKE_CURRENT_LIST_DIR}/run_consumer.cmake)
  set_tests_properties(consumer_${name} PROPERTIES TIMEOUT 300 LABELS consumer RUN_SERIAL ON)
endfunction()

# (a) the install of this very build, and of a fresh build of the other kind of library;
# (b) and (c): mproc as a subproject, FetchContent building it shared. So both kinds of
# library are built, installed and linked by a consumer.
if(BUILD_SHARED_LIBS)
  mproc_add_consumer_test(find_package package SHARED)
  mproc_add_consumer_test(find_package_static package FRESH)
else()
  mproc_add_consumer_test(find_package package)
  mproc_add_consumer_test(find_package_shared package SHARED FRESH)
endif()
mproc_add_consumer_test(add_subdirectory subdirectory)
mproc_add_consumer_test(fetchcontent fetchcontent SHARED)
