{
  "targets": [
    {
      "target_name": "weavets_native",
      "sources": ["src/addon.c", "src/poller.c", "src/tap.c", "src/udp.c", "src/netns.c", "src/sched.c", "src/copy.c", "src/express.c", "src/iothread.c", "src/peer_crypto.c", "src/memory.cc"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter"],
      "cflags_c": ["-std=gnu11"],
      "cflags_cc": ["-std=gnu++17"],
      "libraries": ["-lsodium"]
    },
    {
      "target_name": "weavets-cni",
      "type": "executable",
      "sources": ["cni/weavets-cni.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Werror", "-std=gnu11"]
    }
  ]
}
