/*
 * What the UDP socket (udp.c) offers other C files: the one UDP GSO send both the JS
 * face (udpSendSegmented) and the express path (express.c) use.
 */
#ifndef WEAVETS_UDP_H
#define WEAVETS_UDP_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* The iovecs as datagrams of `segment` bytes each (the last may be shorter), to `to`, in
 * one sendmsg with UDP_SEGMENT; non-blocking, EINTR retried. Returns 0 or the errno. */
int weavets_udp_send_gso(int fd, const struct sockaddr_in *to, struct iovec *iov, size_t iovlen,
                         uint16_t segment);

#endif
