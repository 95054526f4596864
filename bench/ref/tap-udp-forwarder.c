/*
 * The smallest userspace overlay there is, as a reference for bench/throughput.ts: one
 * TAP, one UDP socket to one peer, a 12-byte header in front of each frame, one thread
 * polling both with epoll. No routing, no learning, no crypto, no offloads. What it
 * measures is the floor any TAP-based forwarder pays on this machine: the wake-ups and
 * syscalls of a frame crossing a process on each host.
 *
 *   tap-udp-forwarder TAP LOCAL_IP PEER_IP PORT
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define HEADER 12

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s TAP LOCAL_IP PEER_IP PORT\n", argv[0]);
    return 2;
  }
  int tap = open("/dev/net/tun", O_RDWR | O_NONBLOCK);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  strncpy(ifr.ifr_name, argv[1], IFNAMSIZ - 1);
  if (tap < 0 || ioctl(tap, TUNSETIFF, &ifr) < 0) {
    perror("tap");
    return 1;
  }
  int udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[4]))};
  struct sockaddr_in peer = local;
  if (inet_pton(AF_INET, argv[2], &local.sin_addr) != 1 ||
      inet_pton(AF_INET, argv[3], &peer.sin_addr) != 1 ||
      bind(udp, (struct sockaddr *)&local, sizeof local) < 0 ||
      connect(udp, (struct sockaddr *)&peer, sizeof peer) < 0) {
    perror("udp");
    return 1;
  }
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = tap};
  epoll_ctl(ep, EPOLL_CTL_ADD, tap, &ev);
  ev.data.fd = udp;
  epoll_ctl(ep, EPOLL_CTL_ADD, udp, &ev);
  static unsigned char buf[HEADER + 65536];
  for (;;) {
    struct epoll_event ready[2];
    int n = epoll_wait(ep, ready, 2, -1);
    for (int i = 0; i < n; i++) {
      if (ready[i].data.fd == tap) {
        ssize_t r;
        while ((r = read(tap, buf + HEADER, sizeof buf - HEADER)) > 0) {
          memset(buf, 0x57, HEADER);
          send(udp, buf, (size_t)r + HEADER, 0);
        }
      } else {
        ssize_t r;
        while ((r = recv(udp, buf, sizeof buf, 0)) > 0)
          if (r > HEADER && write(tap, buf + HEADER, (size_t)r - HEADER) < 0) perror("write");
      }
    }
  }
}
