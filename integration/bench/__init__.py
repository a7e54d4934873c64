"""ovslite's benchmark: ovslite against the Linux bridge and Open vSwitch.

Run as root: `python -m integration.bench [--quick] [--only NAME,...] [--json PATH]`
(or `make bench`, `make bench QUICK=1`, `make bench BENCH_ARGS="--only overlay"`).

Every case builds the same topology (two hosts h1, h2 in network namespaces,
veth links, 10.99.0.0/24) around one switch, measures it, and removes
everything before the next case starts; the overlay section's cases build
two hosts each running a switch, joined by an underlay and a tunnel. Modules:

  resources  naming, creation bookkeeping and guaranteed removal
  hosts      namespaces and veth ends
  sw_linux, sw_ovs, sw_ovslite   one builder per switch under test
  topo       a case's topology from those pieces
  fill       MAC-table filler (run inside a namespace)
  ctlload    control-socket load: RSS under requests and unread dumps, CPU at the fd limit
  measure    iperf3, trafgen, ping, /proc accounting
  cases      what each report row builds and measures
  overlay    the overlay section: kernel vxlan, OVS userspace, ovslite tunnels, two hosts
  progress   the live stderr display
  report     table, JSON and PNG
  runner     order, signals, exit status
"""
