# SPDX-License-Identifier: MIT
# Helpers that keep the per-module build uniform: one static library per
# module folder under src/, one test executable per file under tests/unit/.
set(SK_ALL_MODULES "" CACHE INTERNAL "")

# sk_module(NAME [DEPS mod...] [PKGS target...])
function(sk_module name)
  cmake_parse_arguments(M "" "" "DEPS;PKGS" ${ARGN})
  file(GLOB _src CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/${name}/*.c)
  if(NOT _src)
    # A module still being written: keep the target so dependents configure.
    set(_src ${PROJECT_SOURCE_DIR}/cmake/empty.c)
  endif()
  add_library(sk_${name} STATIC ${_src})
  target_include_directories(sk_${name} PUBLIC ${PROJECT_SOURCE_DIR}/include
                                        PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_compile_options(sk_${name} PRIVATE -fvisibility=hidden)
  target_compile_definitions(sk_${name} PRIVATE SK_LOG_MODULE="${name}")
  target_link_libraries(sk_${name} PRIVATE sk_warnings)
  foreach(d ${M_DEPS})
    target_link_libraries(sk_${name} PUBLIC sk_${d})
  endforeach()
  target_link_libraries(sk_${name} PUBLIC ${M_PKGS})
  set(SK_ALL_MODULES ${SK_ALL_MODULES} sk_${name} CACHE INTERNAL "")
endfunction()

# sk_unit_tests(MODULE [LIBS target...]): tests/unit/MODULE/test_*.c
function(sk_unit_tests module)
  cmake_parse_arguments(T "" "" "LIBS;LABELS" ${ARGN})
  file(GLOB _tests CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/unit/${module}/test_*.c)
  foreach(t ${_tests})
    get_filename_component(_n ${t} NAME_WE)
    string(REGEX REPLACE "^test_" "" _n ${_n})
    sk_test_exe(test_${module}_${_n} ${t} LIBS sk_${module} ${T_LIBS} LABELS unit)
  endforeach()
endfunction()

# sk_test_exe(NAME SOURCE [LIBS ...] [LABELS ...] [FIXTURES ...] [TIMEOUT s])
function(sk_test_exe name src)
  cmake_parse_arguments(T "" "TIMEOUT" "LIBS;LABELS;FIXTURES" ${ARGN})
  add_executable(${name} ${src})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/tests/support)
  target_compile_definitions(${name} PRIVATE SK_TESTING SK_TEST_DATA="${PROJECT_SOURCE_DIR}/tests/data"
    SK_BIN_DIR="${CMAKE_BINARY_DIR}/bin" SK_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  target_link_libraries(${name} PRIVATE sk_test_support ${T_LIBS} PkgConfig::CMOCKA sk_warnings)
  add_test(NAME ${name} COMMAND ${name})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
  if(T_FIXTURES)
    set_tests_properties(${name} PROPERTIES FIXTURES_REQUIRED "${T_FIXTURES}")
  endif()
endfunction()
