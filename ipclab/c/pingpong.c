/* pingpong: the C floor of ipclab's benchmark: round trips and throughput over seven mechanisms.
 *
 *   pingpong [--timed] MECHANISM SIZE ITERATIONS MODE [CPU]
 *
 * MECHANISM  pipe        two pipe(2)s, one per direction
 *            fifo        two mkfifo(3)s in a private mkdtemp(3) folder, opened with open(2)
 *            socketpair  socketpair(2), AF_UNIX SOCK_STREAM
 *            unix        an AF_UNIX stream socket bound to a path in a private folder:
 *                        socket(2), bind(2), listen(2), connect(2), accept(2)
 *            tcp         the same on 127.0.0.1, port 0 (getsockname(2)), TCP_NODELAY
 *            sysv_mq     msgget(2) IPC_PRIVATE 0600; type 1 to the child, type 2 to the
 *                        parent; msgsnd(2), msgrcv(2)
 *            sysv_shm    shmget(2) IPC_PRIVATE 0600 and a semget(2) set for the hand-off
 *                        (semop(2)); the payload is copied into and out of the segment
 * SIZE       bytes per message, 1 to 67108864
 * ITERATIONS 1 to 1000000000
 * MODE       rtt   the parent sends SIZE bytes, the child echoes SIZE bytes back, ITERATIONS
 *                  times after a warm-up of ITERATIONS/10 round trips (at least 1, at most
 *                  1000; the first echo is checked byte for byte); prints the mean round trip:
 *                  "rtt_us 12.345"
 *            tput  after a 1-byte "ready" from the child, the parent sends ITERATIONS messages
 *                  of SIZE bytes one way, the child reads them all (checking the first) and
 *                  answers a 1-byte ack; prints SIZE*ITERATIONS/1e6 per second: "MBps 1234.567"
 * CPU        pin both processes to this CPU (sched_setaffinity(2) before fork(2); the child
 *            inherits the mask)
 * --timed    bound every wait by $PINGPONG_WAIT seconds (default 10), the way ipclab's
 *            helpers do, to measure what a timeout costs: poll(2) before each read(2) of a
 *            pipe or FIFO (a pipe has no read timeout), SO_RCVTIMEO and SO_SNDTIMEO on
 *            sockets (the kernel keeps the timeout), semtimedop(2) instead of semop(2), and
 *            msgsnd(2)/msgrcv(2) with IPC_NOWAIT retried after sched_yield(2) (a SysV queue
 *            has no timed wait).  A wait that runs out exits with code 4.
 *
 * The only output on stdout is that one line; errors go to stderr and name the failed call.
 * Exit codes: 0 done, 1 a system call failed, 2 usage, 3 a limit of this machine
 * (sysv_mq: SIZE over msgmax or msgmnb), 4 the watchdog fired, 5 stopped by SIGTERM/INT/HUP.
 *
 * Nothing hangs: alarm(2) arms a watchdog of $PINGPONG_TIMEOUT seconds (default 60) in both
 * processes.  Nothing is left behind: every rendezvous (FIFO opens, connect and accept) happens
 * in the parent before fork, so the FIFOs, the socket file and the folder are unlinked before
 * fork, and the segment is marked IPC_RMID while attached (it vanishes with the last detach).
 * The queue and the semaphore set are removed by the parent on every exit (atexit(3) and the
 * signal handlers, which also kill and reap the child), and by a failing child, so that a
 * parent blocked on them wakes up (EIDRM) instead of waiting for the watchdog.  Only SIGKILL
 * of the parent can leave those two behind.  The child always ends with _exit(2) and is
 * always reaped with waitpid(2).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { PARENT, CHILD };
enum { RD, WR };
enum { PIPE, FIFO, SOCKETPAIR, UNIX, TCP, SYSV_MQ, SYSV_SHM, NMECH };
enum { TO_CHILD, TO_PARENT, FREE_SLOTS };   /* semaphores: messages waiting, free slots */
#define SLOTS 4                             /* tput over sysv_shm: writer and reader overlap */
#define MAX_SIZE 67108864L

static const char *const MECHANISMS[NMECH] = {
    "pipe", "fifo", "socketpair", "unix", "tcp", "sysv_mq", "sysv_shm"};

struct msg { long mtype; char mtext[]; };

/* Everything cleanup() may need; the signal handlers read it, so it is global. */
static struct {
    int side, mech, tput, timed;
    unsigned wait_s;                        /* --timed: the bound of every wait */
    volatile pid_t child;                   /* the parent's child, 0 once reaped */
    int fd[2][2];                           /* [side][RD/WR] for the stream mechanisms */
    int msqid, semid, shmid;
    char *slots, *back;                     /* sysv_shm: areas to the child, to the parent */
    unsigned long sent, taken;              /* sysv_shm: slot counters to the child */
    char dir[4096], path[2][4200];          /* private folder and the names in it */
    char alarm_note[160];
} g = {.fd = {{-1, -1}, {-1, -1}}, .msqid = -1, .semid = -1, .shmid = -1};

/* Remove what could outlive us; only async-signal-safe calls, errors ignored. */
static void remove_ipc(void)
{
    if (g.msqid != -1 && msgctl(g.msqid, IPC_RMID, NULL) != -1)
        g.msqid = -1;
    if (g.semid != -1 && semctl(g.semid, 0, IPC_RMID) != -1)
        g.semid = -1;
    if (g.shmid != -1 && shmctl(g.shmid, IPC_RMID, NULL) != -1)
        g.shmid = -1;
}

static void cleanup(void)
{
    if (g.side == CHILD) {
        remove_ipc();
        return;
    }
    pid_t child = g.child;
    if (child > 0) {                        /* kill first: the child should not see EIDRM */
        kill(child, SIGKILL);
        while (waitpid(child, NULL, 0) == -1 && errno == EINTR)
            ;
        g.child = 0;
    }
    remove_ipc();
    for (int i = 0; i < 2; i++)
        if (g.path[i][0] && unlink(g.path[i]) != -1)
            g.path[i][0] = '\0';
    if (g.dir[0] && rmdir(g.dir) != -1)
        g.dir[0] = '\0';
}

static void on_signal(int sig)
{
    cleanup();
    if (g.side == CHILD && sig != SIGALRM)  /* the parent got it too and reports */
        _exit(5);
    const char *note = sig == SIGALRM ? g.alarm_note : sig == SIGTERM ?
        "pingpong: stopped by SIGTERM\n" : sig == SIGINT ? "pingpong: stopped by SIGINT\n" :
        "pingpong: stopped by SIGHUP\n";
    ssize_t ignored = write(2, note, strlen(note));
    (void)ignored;
    _exit(sig == SIGALRM ? 4 : 5);
}

static void fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "pingpong: %s", g.side == CHILD ? "child: " : "");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (g.side == CHILD) {
        remove_ipc();                       /* wakes a parent blocked on the queue or set */
        _exit(code);
    }
    exit(code);                             /* atexit: cleanup() */
}

#define CHECK(ok, ...) do { if (!(ok)) fail(1, "%s: %s", (__VA_ARGS__), strerror(errno)); } while (0)

static long parse(const char *text, const char *what, long low, long high)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || *end || end == text || value < low || value > high)
        fail(2, "%s must be a whole number between %ld and %ld, got '%s'", what, low, high, text);
    return value;
}

static void fill(char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)(i * 131 + 7);
}

static void check_pattern(const char *buf, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (buf[i] != (char)(i * 131 + 7))
            fail(1, "%s differs from what was sent at byte %zu", what, i);
}

static double now(void);

static void sem_change(int num, short delta)
{
    struct sembuf op = {(unsigned short)num, delta, 0};
    struct timespec bound = {(time_t)g.wait_s, 0};
    if (g.timed && delta < 0) {             /* only a decrement can wait */
        while (semtimedop(g.semid, &op, 1, &bound) == -1) {
            if (errno == EAGAIN)
                fail(4, "semtimedop(-1): the semaphore stayed at 0 for %u s", g.wait_s);
            CHECK(errno == EINTR, "semtimedop(-1)");
        }
        return;
    }
    while (semop(g.semid, &op, 1) == -1)
        CHECK(errno == EINTR, delta > 0 ? "semop(+1)" : "semop(-1)");
}

/* --timed on a queue: retry with IPC_NOWAIT, yielding the CPU between tries, until wait_s. */
static void mq_wait(const char *call, double *deadline)
{
    if (*deadline == 0.0)
        *deadline = now() + g.wait_s;
    else if (now() > *deadline)
        fail(4, "%s: nothing changed in the queue for %u s", call, g.wait_s);
    sched_yield();
}

/* --timed on a pipe or FIFO: poll(2) until fd is readable, for at most wait_s. */
static void wait_readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int ready;
    while ((ready = poll(&p, 1, (int)g.wait_s * 1000)) == -1)
        CHECK(errno == EINTR, "poll");
    if (ready == 0)
        fail(4, "poll: nothing to read for %u s", g.wait_s);
}

/* Send n bytes to the other process; receive n bytes from it. */
static void send_msg(struct msg *m, size_t n)
{
    int to = g.side == PARENT ? TO_CHILD : TO_PARENT;
    if (g.mech == SYSV_MQ) {
        m->mtype = to + 1;
        double deadline = 0.0;
        while (msgsnd(g.msqid, m, n, g.timed ? IPC_NOWAIT : 0) == -1) {
            CHECK(errno == EINTR || (g.timed && errno == EAGAIN), "msgsnd");
            if (errno == EAGAIN)
                mq_wait("msgsnd", &deadline);
        }
    } else if (g.mech == SYSV_SHM) {
        if (to == TO_PARENT) {
            memcpy(g.back, m->mtext, n);
        } else {
            if (g.tput)
                sem_change(FREE_SLOTS, -1);
            memcpy(g.slots + (g.sent++ % (g.tput ? SLOTS : 1)) * n, m->mtext, n);
        }
        sem_change(to, +1);
    } else {
        for (size_t done = 0; done < n;) {
            ssize_t w = write(g.fd[g.side][WR], m->mtext + done, n - done);
            if (w == -1 && errno == EAGAIN)  /* SO_SNDTIMEO ran out */
                fail(4, "write: no room for %u s (SO_SNDTIMEO)", g.wait_s);
            CHECK(w != -1 || errno == EINTR, "write");
            done += w > 0 ? (size_t)w : 0;
        }
    }
}

static void receive_msg(struct msg *m, size_t n, size_t capacity)
{
    int mine = g.side == PARENT ? TO_PARENT : TO_CHILD;
    if (g.mech == SYSV_MQ) {
        ssize_t got;
        double deadline = 0.0;
        while ((got = msgrcv(g.msqid, m, capacity, mine + 1, g.timed ? IPC_NOWAIT : 0)) == -1) {
            CHECK(errno == EINTR || (g.timed && errno == ENOMSG), "msgrcv");
            if (errno == ENOMSG)
                mq_wait("msgrcv", &deadline);
        }
        if ((size_t)got != n)
            fail(1, "msgrcv: got a message of %zd bytes, expected %zu", got, n);
    } else if (g.mech == SYSV_SHM) {
        sem_change(mine, -1);
        if (mine == TO_PARENT) {
            memcpy(m->mtext, g.back, n);
        } else {
            memcpy(m->mtext, g.slots + (g.taken++ % (g.tput ? SLOTS : 1)) * n, n);
            if (g.tput)
                sem_change(FREE_SLOTS, +1);
        }
    } else {
        int poll_first = g.timed && (g.mech == PIPE || g.mech == FIFO);
        for (size_t done = 0; done < n;) {
            if (poll_first)
                wait_readable(g.fd[g.side][RD]);
            ssize_t r = read(g.fd[g.side][RD], m->mtext + done, n - done);
            if (r == -1 && errno == EAGAIN)  /* SO_RCVTIMEO ran out */
                fail(4, "read: nothing arrived for %u s (SO_RCVTIMEO)", g.wait_s);
            CHECK(r != -1 || errno == EINTR, "read");
            if (r == 0)
                fail(1, "read: end of file after %zu of %zu bytes (the other process closed "
                     "its end)", done, n);
            done += r > 0 ? (size_t)r : 0;
        }
    }
}

static void make_dir(void)
{
    const char *tmp = getenv("TMPDIR");
    int len = snprintf(g.dir, sizeof g.dir, "%s/ipclab-pingpong-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (len < 0 || (size_t)len >= sizeof g.dir)
        fail(1, "the temporary folder name is too long: set TMPDIR to a shorter folder");
    CHECK(mkdtemp(g.dir) != NULL, "mkdtemp");
}

static void make_fifos(void)
{
    make_dir();
    for (int d = TO_CHILD; d <= TO_PARENT; d++) {
        snprintf(g.path[d], sizeof g.path[d], "%s/%s", g.dir, d == TO_CHILD ? "to-child" : "to-parent");
        CHECK(mkfifo(g.path[d], 0600) != -1, "mkfifo");
        /* Open the read end first, without blocking; then the write end finds a reader. */
        int r = open(g.path[d], O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        CHECK(r != -1, "open(FIFO, O_RDONLY|O_NONBLOCK)");
        int w = open(g.path[d], O_WRONLY | O_CLOEXEC);
        CHECK(w != -1, "open(FIFO, O_WRONLY)");
        CHECK(fcntl(r, F_SETFL, 0) != -1, "fcntl(F_SETFL)");
        int reader = d == TO_CHILD ? CHILD : PARENT;
        g.fd[reader][RD] = r;
        g.fd[!reader][WR] = w;
        CHECK(unlink(g.path[d]) != -1, "unlink(FIFO)");   /* both ends are open */
        g.path[d][0] = '\0';
    }
    CHECK(rmdir(g.dir) != -1, "rmdir");
    g.dir[0] = '\0';
}

static void make_sockets(int family)
{
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr *addr = family == AF_UNIX ? (struct sockaddr *)&un : (struct sockaddr *)&in;
    socklen_t len = family == AF_UNIX ? sizeof un : sizeof in;
    if (family == AF_UNIX) {
        make_dir();
        int n = snprintf(g.path[0], sizeof g.path[0], "%s/sock", g.dir);
        if (n < 0 || (size_t)n >= sizeof un.sun_path)
            fail(1, "the socket path %s is longer than %zu bytes: set TMPDIR to a shorter "
                 "folder", g.path[0], sizeof un.sun_path - 1);
        memcpy(un.sun_path, g.path[0], (size_t)n + 1);
    }
    int listener = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(listener != -1, "socket");
    CHECK(bind(listener, addr, len) != -1, "bind");
    CHECK(listen(listener, 1) != -1, "listen");
    CHECK(getsockname(listener, addr, &len) != -1, "getsockname");   /* the port picked */
    int client = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(client != -1, "socket");
    /* connect completes from the listen backlog, so accept does not wait for anyone. */
    CHECK(connect(client, addr, len) != -1, "connect");
    int server = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    CHECK(server != -1, "accept");
    CHECK(close(listener) != -1, "close(listener)");
    if (family == AF_INET) {
        int one = 1;
        CHECK(setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != -1,
              "setsockopt(TCP_NODELAY)");
        CHECK(setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != -1,
              "setsockopt(TCP_NODELAY)");
    } else {
        CHECK(unlink(g.path[0]) != -1, "unlink(socket)");
        g.path[0][0] = '\0';
        CHECK(rmdir(g.dir) != -1, "rmdir");
        g.dir[0] = '\0';
    }
    g.fd[PARENT][RD] = g.fd[PARENT][WR] = server;
    g.fd[CHILD][RD] = g.fd[CHILD][WR] = client;
}

/* --timed on a socket: the kernel bounds each read(2) and write(2). */
static void bound_socket(int fd)
{
    struct timeval bound = {.tv_sec = (time_t)g.wait_s};
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound) != -1,
          "setsockopt(SO_RCVTIMEO)");
    CHECK(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &bound, sizeof bound) != -1,
          "setsockopt(SO_SNDTIMEO)");
}

static void setup(long size)
{
    int p[2][2], sv[2];
    switch (g.mech) {
    case PIPE:
        CHECK(pipe2(p[TO_CHILD], O_CLOEXEC) != -1 && pipe2(p[TO_PARENT], O_CLOEXEC) != -1, "pipe");
        g.fd[CHILD][RD] = p[TO_CHILD][0];
        g.fd[PARENT][WR] = p[TO_CHILD][1];
        g.fd[PARENT][RD] = p[TO_PARENT][0];
        g.fd[CHILD][WR] = p[TO_PARENT][1];
        break;
    case FIFO:
        make_fifos();
        break;
    case SOCKETPAIR:
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != -1, "socketpair");
        g.fd[PARENT][RD] = g.fd[PARENT][WR] = sv[0];
        g.fd[CHILD][RD] = g.fd[CHILD][WR] = sv[1];
        break;
    case UNIX:
    case TCP:
        make_sockets(g.mech == UNIX ? AF_UNIX : AF_INET);
        break;
    case SYSV_MQ: {
        struct msginfo info;
        CHECK(msgctl(0, IPC_INFO, (struct msqid_ds *)&info) != -1, "msgctl(IPC_INFO)");
        long limit = info.msgmax < info.msgmnb ? info.msgmax : info.msgmnb;
        if (size > limit)
            fail(3, "SIZE must be at most %ld bytes for sysv_mq on this machine (msgmax %d, "
                 "msgmnb %d), got %ld", limit, info.msgmax, info.msgmnb, size);
        g.msqid = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
        CHECK(g.msqid != -1, "msgget");
        break;
    }
    case SYSV_SHM: {
        int nsems = g.tput ? 3 : 2;         /* rtt: a 2-semaphore ping/pong */
        size_t bytes = (size_t)size * ((g.tput ? SLOTS : 1) + 1);
        g.semid = semget(IPC_PRIVATE, nsems, IPC_CREAT | 0600);
        CHECK(g.semid != -1, "semget");
        unsigned short values[3] = {0, 0, SLOTS};
        CHECK(semctl(g.semid, 0, SETALL, values) != -1, "semctl(SETALL)");
        g.shmid = shmget(IPC_PRIVATE, bytes, IPC_CREAT | 0600);
        CHECK(g.shmid != -1, "shmget");
        char *base = shmat(g.shmid, NULL, 0);
        CHECK(base != (void *)-1, "shmat");
        /* Marked now, gone when the last process detaches; fork(2) attaches the child. */
        CHECK(shmctl(g.shmid, IPC_RMID, NULL) != -1, "shmctl(IPC_RMID)");
        g.shmid = -1;
        g.slots = base;
        g.back = base + bytes - (size_t)size;
        break;
    }
    }
    if (g.timed && g.mech >= SOCKETPAIR && g.mech <= TCP) {
        bound_socket(g.fd[PARENT][RD]);
        bound_socket(g.fd[CHILD][RD]);
    }
}

/* Close the stream ends of ``side`` (one fd for sockets, two for pipes and FIFOs). */
static void close_ends(int side)
{
    if (g.fd[side][RD] != -1)
        CHECK(close(g.fd[side][RD]) != -1, "close");
    if (g.fd[side][WR] != -1 && g.fd[side][WR] != g.fd[side][RD])
        CHECK(close(g.fd[side][WR]) != -1, "close");
    g.fd[side][RD] = g.fd[side][WR] = -1;
}

static double now(void)
{
    struct timespec t;
    CHECK(clock_gettime(CLOCK_MONOTONIC, &t) != -1, "clock_gettime");
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void child(struct msg *m, size_t size, long iterations, long warm)
{
    if (g.tput) {
        send_msg(m, 1);                                 /* ready */
        for (long i = 0; i < iterations; i++) {
            receive_msg(m, size, size);
            if (i == 0)
                check_pattern(m->mtext, size, "the first message");
        }
        send_msg(m, 1);                                 /* ack: all received */
    } else {
        for (long i = 0; i < warm + iterations; i++) {
            receive_msg(m, size, size);
            send_msg(m, size);                          /* echo */
        }
    }
}

static double parent(struct msg *m, size_t size, long iterations, long warm)
{
    double start;
    if (g.tput) {
        receive_msg(m, 1, size);                        /* the child is ready */
        fill(m->mtext, size);
        start = now();
        for (long i = 0; i < iterations; i++)
            send_msg(m, size);
        receive_msg(m, 1, size);                        /* the ack */
        double seconds = now() - start;
        return (double)size * (double)iterations / 1e6 / (seconds > 0 ? seconds : 1e-9);
    }
    for (long i = 0; i < warm; i++) {
        send_msg(m, size);
        if (i == 0)
            memset(m->mtext, 0, size);                  /* so the check sees the echo */
        receive_msg(m, size, size);
        if (i == 0)
            check_pattern(m->mtext, size, "the echo");
    }
    start = now();
    for (long i = 0; i < iterations; i++) {
        send_msg(m, size);
        receive_msg(m, size, size);
    }
    return (now() - start) / (double)iterations * 1e6;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--timed") == 0) {
        g.timed = 1;
        argc--;
        argv++;
    }
    if (argc != 5 && argc != 6)
        fail(2, "usage: pingpong [--timed] MECHANISM SIZE ITERATIONS MODE [CPU]\n  MECHANISM: "
             "pipe fifo socketpair unix tcp sysv_mq sysv_shm; MODE: rtt or tput");
    g.mech = -1;
    for (int i = 0; i < NMECH; i++)
        if (strcmp(argv[1], MECHANISMS[i]) == 0)
            g.mech = i;
    if (g.mech == -1)
        fail(2, "unknown MECHANISM '%s'; use one of pipe, fifo, socketpair, unix, tcp, sysv_mq, "
             "sysv_shm", argv[1]);
    size_t size = (size_t)parse(argv[2], "SIZE", 1, MAX_SIZE);
    long iterations = parse(argv[3], "ITERATIONS", 1, 1000000000L);
    if (strcmp(argv[4], "rtt") != 0 && strcmp(argv[4], "tput") != 0)
        fail(2, "MODE must be rtt or tput, got '%s'", argv[4]);
    g.tput = strcmp(argv[4], "tput") == 0;
    long cpu = argc == 6 ? parse(argv[5], "CPU", 0, CPU_SETSIZE - 1) : -1;
    const char *limit = getenv("PINGPONG_TIMEOUT");
    unsigned seconds = limit ? (unsigned)parse(limit, "PINGPONG_TIMEOUT", 1, 86400) : 60;
    const char *wait = getenv("PINGPONG_WAIT");
    g.wait_s = wait ? (unsigned)parse(wait, "PINGPONG_WAIT", 1, 86400) : 10;
    long warm = iterations / 10 < 1 ? 1 : iterations / 10 > 1000 ? 1000 : iterations / 10;

    snprintf(g.alarm_note, sizeof g.alarm_note, "pingpong: %s %s did not finish within %u s "
             "(watchdog alarm); the child was killed\n", argv[1], argv[4], seconds);
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    int handled[] = {SIGALRM, SIGTERM, SIGINT, SIGHUP};
    for (size_t i = 0; i < sizeof handled / sizeof handled[0]; i++)
        CHECK(sigaction(handled[i], &sa, NULL) != -1, "sigaction");
    CHECK(signal(SIGPIPE, SIG_IGN) != SIG_ERR, "signal(SIGPIPE)");  /* EPIPE, not death */
    CHECK(atexit(cleanup) == 0, "atexit");
    alarm(seconds);
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET((int)cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) == -1)
            fail(1, "sched_setaffinity(CPU %ld): %s", cpu, errno == EINVAL ?
                 "this process may not run on that CPU" : strerror(errno));
    }
    struct msg *m = malloc(sizeof *m + size);
    CHECK(m != NULL, "malloc");
    fill(m->mtext, size);
    setup((long)size);

    fflush(NULL);
    sigset_t handled_set, before;           /* a signal right after fork must find g.side */
    sigemptyset(&handled_set);              /* and g.child set: hold them until then */
    for (size_t i = 0; i < sizeof handled / sizeof handled[0]; i++)
        sigaddset(&handled_set, handled[i]);
    CHECK(sigprocmask(SIG_BLOCK, &handled_set, &before) != -1, "sigprocmask");
    pid_t pid = fork();
    CHECK(pid != -1, "fork");
    if (pid == 0) {
        g.side = CHILD;
        CHECK(sigprocmask(SIG_SETMASK, &before, NULL) != -1, "sigprocmask");
        alarm(seconds + 2);                 /* the parent's watchdog fires and reports first */
        snprintf(g.alarm_note, sizeof g.alarm_note, "pingpong: child: no progress within "
                 "%u s (watchdog alarm)\n", seconds + 2);
        close_ends(PARENT);                 /* so that EOF comes when the parent is gone */
        child(m, size, iterations, warm);
        _exit(0);
    }
    g.child = pid;
    CHECK(sigprocmask(SIG_SETMASK, &before, NULL) != -1, "sigprocmask");
    close_ends(CHILD);
    double result = parent(m, size, iterations, warm);

    int status;
    while (waitpid(pid, &status, 0) == -1)
        CHECK(errno == EINTR, "waitpid");
    g.child = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail(1, "the child ended badly (%s %d)", WIFEXITED(status) ? "exit code" : "signal",
             WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    CHECK(g.msqid == -1 || msgctl(g.msqid, IPC_RMID, NULL) != -1, "msgctl(IPC_RMID)");
    g.msqid = -1;
    CHECK(g.semid == -1 || semctl(g.semid, 0, IPC_RMID) != -1, "semctl(IPC_RMID)");
    g.semid = -1;
    free(m);
    printf(g.tput ? "MBps %.3f\n" : "rtt_us %.3f\n", result);
    return 0;
}
