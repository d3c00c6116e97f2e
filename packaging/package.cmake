# Install rules for everything beyond the two binaries, and the Debian
# package built by `cpack -G DEB` in a build directory (configure with
# -DCMAKE_INSTALL_PREFIX=/usr so `cmake --install` matches the package).
# Every destination follows CMAKE_INSTALL_PREFIX: GNUInstallDirs for the
# usual directories, systemd's pkg-config variables for units, sysusers and
# tmpfiles. Included from the top-level CMakeLists.txt.

set(EMBER_PKG ${PROJECT_SOURCE_DIR}/packaging)

# ember_systemd_dir(VAR PCVAR SUBDIR): sets VAR to the cache variable VAR
# when the user gave one, else to systemd's pkg-config variable PCVAR with
# systemd's prefixes set to ours (so a /usr/local build installs where
# systemd looks under /usr/local and needs no write access to /usr), else to
# SUBDIR under the prefix. Left empty in the cache, it follows CMAKE_INSTALL_PREFIX.
function(ember_systemd_dir var pcvar subdir)
  set(${var} "" CACHE PATH
      "Install directory for systemd's ${pcvar} (empty: ask pkg-config systemd)")
  set(dir "${${var}}")
  if(dir STREQUAL "" AND PKG_CONFIG_EXECUTABLE)
    execute_process(
      COMMAND ${PKG_CONFIG_EXECUTABLE}
              --define-variable=prefix=${CMAKE_INSTALL_PREFIX}
              --define-variable=rootprefix=${CMAKE_INSTALL_PREFIX}
              --define-variable=root_prefix=${CMAKE_INSTALL_PREFIX}
              --variable=${pcvar} systemd
      OUTPUT_VARIABLE dir OUTPUT_STRIP_TRAILING_WHITESPACE
      RESULT_VARIABLE rc ERROR_QUIET)
    if(NOT rc EQUAL 0)
      set(dir "")
    endif()
  endif()
  if(dir STREQUAL "")
    set(dir "${subdir}")
  endif()
  # Relative to the prefix when under it, so `cmake --install --prefix` and
  # cpack place it like the binaries.
  string(FIND "${dir}" "${CMAKE_INSTALL_PREFIX}/" at)
  if(at EQUAL 0)
    string(LENGTH "${CMAKE_INSTALL_PREFIX}/" skip)
    string(SUBSTRING "${dir}" ${skip} -1 dir)
  endif()
  set(${var} "${dir}" PARENT_SCOPE)
endfunction()

# ember_file_for_prefix(SRC OUT): SRC written to OUT (only when that
# changes) with the paths the sources spell for prefix /usr replaced by this
# build's: the units' ExecStart names the installed emberd, the tmpfiles
# entry the installed configuration directory.
function(ember_file_for_prefix src out)
  file(READ ${src} text)
  string(REPLACE "ExecStart=/usr/sbin/emberd" "ExecStart=${CMAKE_INSTALL_FULL_SBINDIR}/emberd"
         text "${text}")
  string(REGEX REPLACE "\n(d[ \t]+)/etc/ember([ \t])" "\n\\1${EMBER_CONFIG_DIR}\\2"
         text "${text}")
  file(CONFIGURE OUTPUT ${out} CONTENT "${text}" @ONLY)
endfunction()

get_filename_component(EMBER_CONFIG_DIR ${EMBER_CONFIG_FILE} DIRECTORY)
install(FILES ${EMBER_PKG}/emberd.yaml DESTINATION ${EMBER_CONFIG_DIR})
install(FILES ${EMBER_PKG}/man/emberd.8 DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES ${EMBER_PKG}/man/emberctl.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${EMBER_PKG}/completion/emberctl.bash
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions
        RENAME emberctl)
if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
  ember_systemd_dir(EMBER_SYSTEMD_UNIT_DIR systemdsystemunitdir lib/systemd/system)
  ember_systemd_dir(EMBER_SYSUSERS_DIR sysusersdir lib/sysusers.d)
  ember_systemd_dir(EMBER_TMPFILES_DIR tmpfilesdir lib/tmpfiles.d)
  set(units ${CMAKE_BINARY_DIR}/packaging/systemd)
  foreach(f emberd.service emberd.socket ember.sysusers ember.tmpfiles)
    ember_file_for_prefix(${EMBER_PKG}/systemd/${f} ${units}/${f})
  endforeach()
  install(FILES ${units}/emberd.service ${units}/emberd.socket
          DESTINATION ${EMBER_SYSTEMD_UNIT_DIR})
  install(FILES ${units}/ember.sysusers DESTINATION ${EMBER_SYSUSERS_DIR} RENAME ember.conf)
  install(FILES ${units}/ember.tmpfiles DESTINATION ${EMBER_TMPFILES_DIR} RENAME ember.conf)
elseif(APPLE)
  install(FILES ${EMBER_PKG}/launchd/dev.ember.emberd.plist
          DESTINATION ${CMAKE_INSTALL_DATADIR}/ember/launchd)
endif()

set(CPACK_PACKAGE_NAME ember)
set(CPACK_PACKAGE_VENDOR "ember")
set(CPACK_PACKAGE_CONTACT "ember maintainers <maintainers@ember.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "microVM manager: emberd daemon and emberctl client")
string(CONCAT CPACK_PACKAGE_DESCRIPTION
  "ember runs microVMs under QEMU or Firecracker on one host. emberd owns their\n"
  "lifecycles, vsock CIDs and state; emberctl drives it over a Unix socket.\n"
  "Includes systemd units (socket activation, Type=notify), the group ember\n"
  "for socket access, manual pages and bash completion.")
# The package installs where this build's paths point (emberd's default
# configuration, the units' ExecStart): configure it with prefix /usr.
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_GENERATOR DEB)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Library dependencies from the binaries themselves (dpkg-shlibdeps, in
# dpkg-dev); hypervisors are recommended, not required: either one will do.
# nftables too: emberd runs `nft` for VMs with network nat only (VMs without
# a network, or with QEMU's user mode, need nothing). The TAPs and their
# addresses are set up over rtnetlink, so no iproute2 is needed at run time.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
  set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "qemu-system-arm, qemu-utils, nftables")
else()
  set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "qemu-system-x86, qemu-utils, nftables")
endif()
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "bash-completion")
# The configuration is the administrator's: upgrades must not overwrite it.
file(WRITE ${CMAKE_BINARY_DIR}/deb/conffiles "${EMBER_CONFIG_FILE}\n")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${CMAKE_BINARY_DIR}/deb/conffiles
    ${EMBER_PKG}/deb/postinst ${EMBER_PKG}/deb/prerm ${EMBER_PKG}/deb/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
