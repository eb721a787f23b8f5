# Compiles SOURCE (with the project's include directories) and passes only if compilation
# FAILS with a diagnostic matching EXPECT: a refusal at compile time is the behaviour under
# test, and its message must name the problem.
execute_process(
  COMMAND ${COMPILER} -std=c++20 -fsyntax-only ${INCLUDES} ${SOURCE}
  RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE errors)
if(result EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but it must be refused at compile time")
endif()
if(NOT "${output}${errors}" MATCHES "${EXPECT}")
  message(FATAL_ERROR "${SOURCE} failed to compile, but without a message matching '${EXPECT}':\n${errors}")
endif()
