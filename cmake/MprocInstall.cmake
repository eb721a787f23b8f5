# Install rules and the CMake package for find_package(mproc CONFIG).
#
# Installs (relative to CMAKE_INSTALL_PREFIX):
#   <libdir>/libmproc.a (or libmproc.so.<version> with BUILD_SHARED_LIBS=ON)
#   <includedir>/mproc/...                the public headers, detail/ included
#   <libdir>/libmproc_mpi.a, when MPI was found (target mproc::mpi)
#   <libdir>/cmake/mproc/mprocConfig.cmake, mprocConfigVersion.cmake, mprocTargets*.cmake,
#                                       mprocMpiTargets*.cmake
# Consumers then write:
#   find_package(mproc CONFIG REQUIRED)
#   target_link_libraries(app PRIVATE mproc::mproc)
include(CMakePackageConfigHelpers)

set(MPROC_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/mproc"
    CACHE STRING "Where mproc's CMake package files are installed, relative to the prefix")
mark_as_advanced(MPROC_INSTALL_CMAKEDIR)

# Components carry the mproc_ prefix so that a parent project that adds mproc as a
# subproject can tell our files from its own.
install(TARGETS mproc
  EXPORT mprocTargets
  RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}" COMPONENT mproc_Runtime
  LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT mproc_Runtime
          NAMELINK_COMPONENT mproc_Development
  ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT mproc_Development
  INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")

# The whole public header tree; private headers live in src/ and are never installed.
install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/mproc"
  DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
  COMPONENT mproc_Development)

# mproc::mpi, built only when MPI was found: its own export set, loaded by the package
# config when present.
if(TARGET mproc_mpi)
  install(TARGETS mproc_mpi
    EXPORT mprocMpiTargets
    RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}" COMPONENT mproc_Runtime
    LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT mproc_Runtime
            NAMELINK_COMPONENT mproc_Development
    ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT mproc_Development
    INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
  install(EXPORT mprocMpiTargets
    NAMESPACE mproc::
    FILE mprocMpiTargets.cmake
    DESTINATION "${MPROC_INSTALL_CMAKEDIR}"
    COMPONENT mproc_Development)
endif()

install(EXPORT mprocTargets
  NAMESPACE mproc::
  FILE mprocTargets.cmake
  DESTINATION "${MPROC_INSTALL_CMAKEDIR}"
  COMPONENT mproc_Development)

configure_package_config_file(
  "${CMAKE_CURRENT_LIST_DIR}/mprocConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/mprocConfig.cmake"
  INSTALL_DESTINATION "${MPROC_INSTALL_CMAKEDIR}")
# 0.x releases are compatible within the same 0 major, as SameMajorVersion says; bump the
# major when the API breaks.
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/mprocConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}"
  COMPATIBILITY SameMajorVersion)

install(FILES
  "${PROJECT_BINARY_DIR}/mprocConfig.cmake"
  "${PROJECT_BINARY_DIR}/mprocConfigVersion.cmake"
  DESTINATION "${MPROC_INSTALL_CMAKEDIR}"
  COMPONENT mproc_Development)
