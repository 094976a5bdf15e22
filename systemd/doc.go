// Package systemd holds smimed's unit, sysusers.d, tmpfiles.d and example configuration files and the tests that check them.
package systemd
