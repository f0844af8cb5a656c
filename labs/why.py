"""why: the agent's answer to `./socklab why PORT`, a request {"why": QUESTION} (labs/session.py) instead of labs.

QUESTION is {"proto": tcp|udp, "port": 1-65535, "address": an address literal, "opts": [option set, ...] or null}:
a new server's socket, of the family the address gives (server_address), on that address and port, with each option
set (null: every option set the host knows, as bind_matrix.option_sets). The agent prints its host record, then

    {"record": "port", proto, port, address, family, uid, table, blind_spot, owners}
        what was asked; the agent's own uid (the user a new server would run as here; null without uids), the
        connection-table reader, what it cannot see, how owners were found (labs/holders.py)
    {"record": "holder", ...}   one per socket on the port now (labs.holders.holder's fields)
    {"record": "answer", opts, tried, setsockopt, bind, errno, detail}
        one per option set: a bind() of a socket with those options on the address and port, from a separate
        process (a prober: labs/prober.py, the user the agent runs as), closed at once and never listen()ed, so the
        holder loses nothing; or, where even that could take something from the holder, not tried (tried false,
        detail says why)
    {"record": "end", "cases": 0, ...}

Not tried: UDP while anything holds the port (a UDP socket bound beside one that shares the port, with
SO_REUSEPORT, or SO_REUSEADDR on Linux and BSD, receives some of its datagrams at once, and a holder's options cannot
be read from the tables); SO_REUSEPORT_LB beside a TCP listener (FreeBSD's in_pcbinshash() puts a socket with it in
the port's load-balancing group at bind(), so a connection could be handed to it); an option the host lacks.
"""
import ipaddress
import os

from labs import bind_matrix, holders
from labs.prober import ProberProcess
from labs.witness import WitnessError
from labs.vocabulary import NO_OPTIONS, OPTIONS, UNSUPPORTED, is_option_set, join_options, split_options

PROTOCOLS = ("tcp", "udp")


def server_address(text):
    """(family, address) of a new server's address as a user writes it: an IPv4 address is `inet`; `::` and a
    v4-mapped address are `dual` (IPV6_V6ONLY off, as a dual-stack server binds them); any other IPv6 address is
    `inet6`. ValueError for what is not an address."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError("{!r} is not an IPv4 or IPv6 address".format(text)) from None
    if address.version == 4:
        return "inet", str(address)
    if address.is_unspecified or address.ipv4_mapped is not None:
        return "dual", str(address) if address.ipv4_mapped is None else "::ffff:" + str(address.ipv4_mapped)
    return "inet6", str(address)


def option_set(text):
    """The canonical spelling of an option set written with "+" in any order ("SO_REUSEPORT+SO_REUSEADDR"), or
    none; ValueError naming what is not an option."""
    parts = text.split("+")
    if text == NO_OPTIONS:
        return text
    unknown = [part for part in parts if part not in OPTIONS]
    if unknown or len(set(parts)) != len(parts):
        raise ValueError("{!r} is not an option set: options among {} joined by +, each once, or {}".format(
            text, ", ".join(OPTIONS), NO_OPTIONS))
    return join_options(parts)


def checked(question):
    """The question with its address's family, every field checked; ValueError for what is wrong."""
    if not isinstance(question, dict):
        raise ValueError("why: the question must be a JSON object")
    proto, port = question.get("proto"), question.get("port")
    if proto not in PROTOCOLS:
        raise ValueError("why: proto must be tcp or udp, not {!r}".format(proto))
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ValueError("why: port must be a whole number 1-65535, not {!r}".format(port))
    family, address = server_address(str(question.get("address")))
    opts = question.get("opts")
    if opts is not None and (not isinstance(opts, list) or not all(isinstance(item, str) and is_option_set(item)
                                                                   for item in opts)):
        raise ValueError("why: opts must be a list of option sets (as {} spells them), or null".format(
            "SO_REUSEADDR+SO_REUSEPORT"))
    return {"proto": proto, "port": port, "address": address, "family": family, "opts": opts}


def not_tried(proto, opts, held, known):
    """Why a bind with `opts` is not tried now (the module's docstring), or "" when it is harmless; `held` is the
    holders, or None where the table could not be read."""
    missing = [name for name in split_options(opts) if name not in known]
    if missing:
        return "this host has no {}".format(missing[0])
    if proto == "udp" and held is None:
        return "not tried: the connection table cannot be read here, so whether something holds the port is unknown"
    if proto == "udp" and held:
        return ("not tried: a UDP socket that binds beside one sharing the port (SO_REUSEPORT, or SO_REUSEADDR on "
                "Linux and BSD) takes some of its datagrams at once, and the holder's options cannot be read")
    if "SO_REUSEPORT_LB" in split_options(opts) and (held is None or any(
            entry["state"] == "LISTEN" for entry in held)):
        return ("not tried: FreeBSD puts a SO_REUSEPORT_LB socket in the listener's load-balancing group at bind() "
                "(in_pcbinshash), so a connection could be handed to it")
    return ""


def answers(question, held, known):
    """One answer record's fields per option set asked (every one the host knows when none is given)."""
    chosen = question["opts"] if question["opts"] is not None else bind_matrix.option_sets(known)
    found, prober = [], None
    try:
        for opts in chosen:
            why = not_tried(question["proto"], opts, held, known)
            if why:
                found.append({"opts": opts, "tried": False, "setsockopt": UNSUPPORTED if why.startswith("this host")
                              else "", "bind": "", "errno": None, "detail": why})
                continue
            prober = prober or ProberProcess()
            steps = prober.try_second({"proto": question["proto"], "family": question["family"],
                                       "addr": question["address"], "port": question["port"],
                                       "opts": list(split_options(opts)), "listen": False})
            found.append({"opts": opts, "tried": True, "setsockopt": steps.get("setsockopt", ""),
                          "bind": steps.get("bind", ""), "errno": steps.get("errno"), "detail": ""})
    finally:
        if prober is not None:
            prober.close()
    return found


def run(host, question, emit):
    """Emits the port record, each holder and each answer (the module's docstring)."""
    try:
        found, table, blind_spot, owners = holders.holders(host["os_family"], question["proto"], question["port"],
                                                           host.get("witness"))
    except WitnessError as exc:
        found, table, blind_spot, owners = None, "none: {}".format(exc), "", "unknown: no connection table"
    emit(dict({"record": "port"}, **{key: question[key] for key in ("proto", "port", "address", "family")},
              uid=os.geteuid() if hasattr(os, "geteuid") else None, table=table, blind_spot=blind_spot,
              owners=owners))
    for entry in found or ():
        emit(dict({"record": "holder"}, **entry))
    for entry in answers(question, found, host["options"]):
        emit(dict({"record": "answer"}, **entry))
