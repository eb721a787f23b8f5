# Runs SERVER with its stdout piped into CLIENT (which reads the address from it), run by
# INTERPRETER when one is given (a Python client: -DINTERPRETER=python3); fails unless both
# exit 0 and the client's output matches the regular expression EXPECT.
execute_process(COMMAND ${SERVER} COMMAND ${INTERPRETER} ${CLIENT}
                RESULTS_VARIABLE results OUTPUT_VARIABLE output ERROR_VARIABLE errors TIMEOUT 60)
message("${output}${errors}")
if(NOT results STREQUAL "0;0")
  message(FATAL_ERROR "server and client exited with ${results}")
endif()
if(NOT output MATCHES "${EXPECT}")
  message(FATAL_ERROR "the client's output does not match '${EXPECT}'")
endif()
