package api

import "golang.org/x/sys/unix"

// peerShutdown reports whether the peer of the TCP socket fd has sent its
// FIN (or reset it), whatever data is still unread.
func peerShutdown(fd int) bool {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return false
	}
	switch info.State {
	case unix.BPF_TCP_CLOSE_WAIT, unix.BPF_TCP_CLOSE, unix.BPF_TCP_LAST_ACK:
		return true
	}
	return false
}
