/* The per-frame hot path of a PBX media websocket, compiled: frame headers, unmasking, and
 * media messages in a platform's canonical JSON layout, parsed and base64-decoded in C.
 *
 * A call at 20 ms frames sends 50 websocket frames a second; in Python the parse of each one
 * (header, unmask, UTF-8, the layout match, base64) costs more than everything else the
 * bridge does with it. scan() parses the frames in a buffer and returns the media messages
 * that continue one another (same track, consecutive sequence numbers, timestamps without a
 * gap) as one run: their decoded payloads joined, so Python handles a read's worth of media
 * once, not once per frame.
 *
 * scan() only ever says "this is a plain media message" when the Python regex path
 * (twilio_family.media_layout) would say the same; anything else (another layout, an odd
 * timestamp, bad base64, a control frame) goes back to Python as a whole frame, where the
 * general path judges it. So declining is always safe; accepting must be exact. The module
 * is optional: without a compiler the bridge runs the pure-Python path (media_connection.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum { K_MORE = 0, K_RUN = 1, K_TEXT = 2, K_BINARY = 3, K_OTHER = 4, K_HUGE = 5 };
enum { V_NONE = 0, V_SEQ = 1, V_CHUNK = 2, V_STAMP = 3, V_TRACK = 4, V_SID = 5, V_PAYLOAD = 6 };

#define MAX_OPS 16
#define MAX_TRACKS 16
#define MAX_PIECE 64
#define MAX_RUN_FRAMES 64
#define EXACT_DOUBLE ((int64_t)1 << 53)

typedef struct {
    int optional;
    int kind;
    Py_ssize_t prefix_len, suffix_len;
    char prefix[MAX_PIECE], suffix[MAX_PIECE];
} Op;

typedef struct {
    char name[32];
    Py_ssize_t len;
    int index;
} Track;

typedef struct {
    PyObject_HEAD
    Op ops[MAX_OPS];
    int n_ops;
    Track tracks[MAX_TRACKS];
    int n_tracks;
    int default_track; /* the track of a message without one; -1: the Python path decides */
    char sid[129];
    Py_ssize_t sid_len;
    int bytes_per_sample; /* wire bytes per sample: 1 (mu-law, A-law) or 2 (L16) */
    long wire_rate;
    Py_ssize_t max_run_bytes;
    unsigned char *scratch; /* one unmasked frame */
    Py_ssize_t scratch_cap;
    unsigned char *out; /* the run's decoded payloads */
    Py_ssize_t out_cap;
} MediaLayout;

static PyTypeObject MediaLayoutType;

typedef struct {
    int has_seq, has_stamp, track;
    int64_t seq, stamp;
    const unsigned char *payload;
    Py_ssize_t payload_len;
} Media;

/* ---- the layout ------------------------------------------------------------------------ */

static int copy_piece(PyObject *obj, char *dst, Py_ssize_t *len) {
    char *src;
    if (PyBytes_AsStringAndSize(obj, &src, len) < 0) return -1;
    if (*len >= MAX_PIECE) {
        PyErr_SetString(PyExc_ValueError, "layout piece too long");
        return -1;
    }
    memcpy(dst, src, (size_t)*len);
    return 0;
}

static void layout_dealloc(MediaLayout *self) {
    PyMem_Free(self->scratch);
    PyMem_Free(self->out);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* MediaLayout(ops, tracks, default_track, stream_id, bytes_per_sample, wire_rate, max_run_bytes)
 * ops: [(optional, prefix, kind, suffix)]; tracks: [(raw name, index)]. */
static int layout_init(MediaLayout *self, PyObject *args, PyObject *kwds) {
    PyObject *ops, *tracks;
    const char *sid;
    Py_ssize_t sid_len;
    int default_track, bps;
    long rate;
    Py_ssize_t max_run;
    if (!PyArg_ParseTuple(args, "O!O!iy#iln", &PyList_Type, &ops, &PyList_Type, &tracks,
                          &default_track, &sid, &sid_len, &bps, &rate, &max_run))
        return -1;
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "MediaLayout takes no keyword arguments");
        return -1;
    }
    if (PyList_GET_SIZE(ops) > MAX_OPS || PyList_GET_SIZE(tracks) > MAX_TRACKS ||
        sid_len < 1 || sid_len > 128 || (bps != 1 && bps != 2) || rate <= 0 || max_run < 1) {
        PyErr_SetString(PyExc_ValueError, "bad media layout");
        return -1;
    }
    self->n_ops = (int)PyList_GET_SIZE(ops);
    for (int i = 0; i < self->n_ops; i++) {
        PyObject *op = PyList_GET_ITEM(ops, i);
        PyObject *prefix, *suffix;
        Op *o = &self->ops[i];
        if (!PyArg_ParseTuple(op, "pSiS", &o->optional, &prefix, &o->kind, &suffix)) return -1;
        if (o->kind < V_NONE || o->kind > V_PAYLOAD) {
            PyErr_SetString(PyExc_ValueError, "bad layout value kind");
            return -1;
        }
        if (copy_piece(prefix, o->prefix, &o->prefix_len) < 0) return -1;
        if (copy_piece(suffix, o->suffix, &o->suffix_len) < 0) return -1;
    }
    self->n_tracks = (int)PyList_GET_SIZE(tracks);
    for (int i = 0; i < self->n_tracks; i++) {
        PyObject *name;
        Track *t = &self->tracks[i];
        if (!PyArg_ParseTuple(PyList_GET_ITEM(tracks, i), "Si", &name, &t->index)) return -1;
        if (PyBytes_GET_SIZE(name) < 1 || PyBytes_GET_SIZE(name) > 24) {
            PyErr_SetString(PyExc_ValueError, "bad track name");
            return -1;
        }
        t->len = PyBytes_GET_SIZE(name);
        memcpy(t->name, PyBytes_AS_STRING(name), (size_t)t->len);
    }
    self->default_track = default_track;
    memcpy(self->sid, sid, (size_t)sid_len);
    self->sid_len = sid_len;
    self->bytes_per_sample = bps;
    self->wire_rate = rate;
    self->max_run_bytes = max_run;
    return 0;
}

static int reserve(unsigned char **buf, Py_ssize_t *cap, Py_ssize_t need) {
    if (need <= *cap) return 0;
    Py_ssize_t size = *cap ? *cap : 1024;
    while (size < need) size *= 2;
    unsigned char *grown = PyMem_Realloc(*buf, (size_t)size);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *buf = grown;
    *cap = size;
    return 0;
}

/* ---- matching one message -------------------------------------------------------------- */

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* A counter as the regex takes it: "0..." quoted (1-18 digits) or a bare JSON integer. */
static Py_ssize_t parse_number(const unsigned char *p, Py_ssize_t n, int64_t *value) {
    Py_ssize_t i = 0, digits = 0;
    int quoted = n > 0 && p[0] == '"';
    int64_t v = 0;
    if (quoted) i = 1;
    while (i < n && is_digit(p[i]) && digits < 18) {
        v = v * 10 + (p[i] - '0');
        i++;
        digits++;
    }
    if (digits == 0) return -1;
    if (quoted) {
        if (i >= n || p[i] != '"') return -1;
        i++;
    } else if (p[0] == '0' && digits > 1) {
        return -1; /* a bare number has no leading zero */
    }
    *value = v;
    return i;
}

static int track_char(unsigned char c) { return (c >= 'a' && c <= 'z') || c == '_'; }

static int sid_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' ||
           c == '.' || c == ':' || c == '-';
}

static const signed char B64[256] = {
    ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,
    ['H'] = 8,  ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14,
    ['O'] = 15, ['P'] = 16, ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21,
    ['V'] = 22, ['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28,
    ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35,
    ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42,
    ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48, ['w'] = 49,
    ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63,
    ['/'] = 64,
}; /* value + 1; 0: not a base64 letter */

/* Canonical base64 (what strict decoding and re-encoding give back unchanged) into out;
 * returns the decoded length, or -1. */
static Py_ssize_t b64_decode(const unsigned char *s, Py_ssize_t n, unsigned char *out) {
    if (n == 0 || n % 4) return -1;
    Py_ssize_t o = 0;
    for (Py_ssize_t i = 0; i < n; i += 4) {
        int a = B64[s[i]] - 1, b = B64[s[i + 1]] - 1, c, d;
        if (a < 0 || b < 0) return -1;
        int last = i + 4 == n;
        if (last && s[i + 2] == '=' && s[i + 3] == '=') {
            if (b & 0x0F) return -1; /* bits a re-encode would drop */
            out[o++] = (unsigned char)(a << 2 | b >> 4);
            break;
        }
        c = B64[s[i + 2]] - 1;
        if (c < 0) return -1;
        if (last && s[i + 3] == '=') {
            if (c & 0x03) return -1;
            out[o++] = (unsigned char)(a << 2 | b >> 4);
            out[o++] = (unsigned char)((b & 0x0F) << 4 | c >> 2);
            break;
        }
        d = B64[s[i + 3]] - 1;
        if (d < 0) return -1;
        out[o++] = (unsigned char)(a << 2 | b >> 4);
        out[o++] = (unsigned char)((b & 0x0F) << 4 | c >> 2);
        out[o++] = (unsigned char)((c & 0x03) << 6 | d);
    }
    return o;
}

/* The whole message in the layout, deterministically (an optional field is there exactly
 * when its key is): 1 and m filled, or 0 when the Python path must judge it. */
static int match(MediaLayout *L, const unsigned char *p, Py_ssize_t n, Media *m) {
    Py_ssize_t pos = 0;
    int track = -2; /* -2: no track field */
    m->has_seq = m->has_stamp = 0;
    m->payload = NULL;
    for (int k = 0; k < L->n_ops; k++) {
        Op *op = &L->ops[k];
        if (n - pos < op->prefix_len || memcmp(p + pos, op->prefix, (size_t)op->prefix_len)) {
            if (op->optional) continue;
            return 0;
        }
        pos += op->prefix_len;
        const unsigned char *v = p + pos;
        Py_ssize_t left = n - pos, used = 0;
        int64_t number;
        switch (op->kind) {
        case V_NONE:
            break;
        case V_SEQ:
        case V_CHUNK:
        case V_STAMP:
            used = parse_number(v, left, &number);
            if (used < 0) return 0;
            if (op->kind == V_SEQ) {
                m->has_seq = 1;
                m->seq = number;
            } else if (op->kind == V_STAMP) {
                m->has_stamp = 1;
                m->stamp = number;
            }
            break;
        case V_TRACK:
            while (used < left && used < 25 && track_char(v[used])) used++;
            if (used < 1 || used > 24) return 0;
            track = -1;
            for (int t = 0; t < L->n_tracks; t++) {
                if (L->tracks[t].len == used && !memcmp(L->tracks[t].name, v, (size_t)used)) {
                    track = L->tracks[t].index;
                    break;
                }
            }
            if (track < 0) return 0; /* an unknown or refused track: Python says why */
            break;
        case V_SID:
            while (used < left && used <= 128 && sid_char(v[used])) used++;
            if (used != L->sid_len || memcmp(v, L->sid, (size_t)used)) return 0;
            break;
        case V_PAYLOAD:
            while (used < left && B64[v[used]]) used++;
            if (used == 0) return 0;
            for (int pad = 0; pad < 2 && used < left && v[used] == '='; pad++) used++;
            m->payload = v;
            m->payload_len = used;
            break;
        }
        pos += used;
        if (n - pos < op->suffix_len || memcmp(p + pos, op->suffix, (size_t)op->suffix_len))
            return 0;
        pos += op->suffix_len;
    }
    if (pos != n || m->payload == NULL) return 0;
    if (track == -2) track = L->default_track;
    if (track < 0) return 0;
    m->track = track;
    return 1;
}

/* ---- frames ---------------------------------------------------------------------------- */

typedef struct {
    Py_ssize_t header, length, size; /* size = header + length */
    int opcode, simple;
} Frame;

/* 1: a whole frame at p; 0: more bytes needed; -1: a 64-bit length (never media). */
static int frame_at(const unsigned char *p, Py_ssize_t avail, Py_ssize_t limit, int allow_data,
                    Frame *f) {
    if (avail < 2) return 0;
    unsigned b0 = p[0], b1 = p[1];
    Py_ssize_t length = b1 & 0x7F, header = 2;
    if (length == 127) return -1;
    if (length == 126) {
        if (avail < 4) return 0;
        length = (Py_ssize_t)p[2] << 8 | p[3];
        header = 4;
    }
    if (b1 & 0x80) header += 4;
    if (avail < header + length) return 0;
    f->header = header;
    f->length = length;
    f->size = header + length;
    f->opcode = b0 & 0x0F;
    f->simple = (b0 & 0xF0) == 0x80 && (f->opcode == 1 || f->opcode == 2) && (b1 & 0x80) &&
                allow_data && (limit < 0 || length <= limit);
    return 1;
}

static void unmask(const unsigned char *src, Py_ssize_t n, const unsigned char *key,
                   unsigned char *dst) {
    Py_ssize_t i = 0;
    uint64_t k8;
    unsigned char k[8] = {key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]};
    memcpy(&k8, k, 8);
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= k8;
        memcpy(dst + i, &w, 8);
    }
    for (; i < n; i++) dst[i] = src[i] ^ key[i & 3];
}

static PyObject *unmasked_bytes(const unsigned char *frame, Frame *f) {
    PyObject *out = PyBytes_FromStringAndSize(NULL, f->length);
    if (out == NULL) return NULL;
    unmask(frame + f->header, f->length, frame + f->header - 4,
           (unsigned char *)PyBytes_AS_STRING(out));
    return out;
}

/* The frame at p as a media message: unmasked into scratch, matched, decoded into
 * out + out_len. 1 on success (m filled, *decoded set), 0 if not media, -1 on error. */
static int media_frame(MediaLayout *L, const unsigned char *p, Frame *f, Py_ssize_t out_len,
                       Media *m, Py_ssize_t *decoded) {
    if (f->opcode != 1) return 0;
    if (reserve(&L->scratch, &L->scratch_cap, f->length) < 0) return -1;
    unmask(p + f->header, f->length, p + f->header - 4, L->scratch);
    if (!match(L, L->scratch, f->length, m)) return 0;
    if (reserve(&L->out, &L->out_cap, out_len + m->payload_len) < 0) return -1;
    Py_ssize_t n = b64_decode(m->payload, m->payload_len, L->out + out_len);
    if (n < 0 || n % L->bytes_per_sample) return 0;
    *decoded = n;
    return 1;
}

static PyObject *number_or_none(int has, int64_t value) {
    if (!has) Py_RETURN_NONE;
    return PyLong_FromLongLong(value);
}

/* Whether b carries on from a without a gap, reorder or change, as the dialect accounts
 * them (TwilioStyleDialect._note_sequence and _note_timestamp). */
static int continues(Media *a, Media *b, double frame_ms) {
    if (b->track != a->track || b->has_seq != a->has_seq || b->has_stamp != a->has_stamp)
        return 0;
    if (a->has_seq && b->seq != a->seq + 1) return 0;
    if (a->has_stamp) {
        if (b->stamp <= a->stamp || b->stamp >= EXACT_DOUBLE) return 0;
        double skipped = (double)b->stamp - ((double)a->stamp + frame_ms);
        if (skipped >= (frame_ms > 1.0 ? frame_ms : 1.0)) return 0;
    }
    return 1;
}

/* scan(data, pos, limit, allow_data, layout) -> tuple; see ivr_bridge/wsfast.py. */
static PyObject *scan(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "scan() takes 5 arguments");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *result = NULL;
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    Py_ssize_t limit = PyLong_AsSsize_t(args[2]);
    int allow_data = PyObject_IsTrue(args[3]);
    PyObject *layout_obj = args[4];
    if (PyErr_Occurred() || allow_data < 0) goto done;
    if (pos < 0 || pos > view.len) {
        PyErr_SetString(PyExc_ValueError, "pos out of range");
        goto done;
    }
    const unsigned char *data = view.buf;
    Frame f;
    int got = frame_at(data + pos, view.len - pos, limit, allow_data, &f);
    if (got == 0) {
        result = Py_BuildValue("(in)", K_MORE, pos);
        goto done;
    }
    if (got < 0) {
        result = Py_BuildValue("(in)", K_HUGE, pos);
        goto done;
    }
    if (!f.simple) {
        result = Py_BuildValue("(in)", K_OTHER, pos + f.size);
        goto done;
    }
    MediaLayout *L = NULL;
    if (layout_obj != Py_None) {
        if (!PyObject_TypeCheck(layout_obj, &MediaLayoutType)) {
            PyErr_SetString(PyExc_TypeError, "layout must be a MediaLayout or None");
            goto done;
        }
        L = (MediaLayout *)layout_obj;
    }
    Media first, prev, next;
    Py_ssize_t decoded = 0, total = 0;
    int is_media = 0;
    if (L != NULL) {
        is_media = media_frame(L, data + pos, &f, 0, &first, &decoded);
        if (is_media < 0) goto done;
    }
    if (!is_media) {
        PyObject *payload = L != NULL && f.opcode == 1
                                ? PyBytes_FromStringAndSize((const char *)L->scratch, f.length)
                                : unmasked_bytes(data + pos, &f);
        if (payload == NULL) goto done;
        result = Py_BuildValue("(inN)", f.opcode == 1 ? K_TEXT : K_BINARY, pos + f.size, payload);
        goto done;
    }
    /* A run: the media messages after this one that carry straight on from it. */
    Py_ssize_t frame_len = decoded;
    double frame_ms = (double)((frame_len / L->bytes_per_sample) * 1000) / (double)L->wire_rate;
    int64_t stamps[MAX_RUN_FRAMES];
    int count = 1;
    stamps[0] = first.stamp;
    total = decoded;
    pos += f.size;
    prev = first;
    if (first.has_stamp && first.stamp >= EXACT_DOUBLE) goto built;
    while (count < MAX_RUN_FRAMES && total + frame_len <= L->max_run_bytes) {
        if (frame_at(data + pos, view.len - pos, limit, allow_data, &f) != 1 || !f.simple) break;
        int ok = media_frame(L, data + pos, &f, total, &next, &decoded);
        if (ok < 0) goto done;
        if (!ok || decoded != frame_len || !continues(&prev, &next, frame_ms)) break;
        stamps[count++] = next.stamp;
        total += decoded;
        pos += f.size;
        prev = next;
    }
built:;
    PyObject *stamp_tuple;
    if (!first.has_stamp) {
        stamp_tuple = Py_NewRef(Py_None);
    } else {
        stamp_tuple = PyTuple_New(count);
        if (stamp_tuple == NULL) goto done;
        for (int i = 0; i < count; i++) {
            PyObject *s = PyLong_FromLongLong(stamps[i]);
            if (s == NULL) {
                Py_DECREF(stamp_tuple);
                goto done;
            }
            PyTuple_SET_ITEM(stamp_tuple, i, s);
        }
    }
    PyObject *seq = number_or_none(first.has_seq, first.seq);
    PyObject *raw = PyBytes_FromStringAndSize((const char *)L->out, total);
    if (seq == NULL || raw == NULL) {
        Py_XDECREF(seq);
        Py_XDECREF(raw);
        Py_DECREF(stamp_tuple);
        goto done;
    }
    result = Py_BuildValue("(iniiNNN)", K_RUN, pos, count, first.track, seq, stamp_tuple, raw);
done:
    PyBuffer_Release(&view);
    return result;
}

static PyTypeObject MediaLayoutType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ivr_bridge._wsfast.MediaLayout",
    .tp_basicsize = sizeof(MediaLayout),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A platform's canonical media message layout, compiled (see wsfast.py).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)layout_init,
    .tp_dealloc = (destructor)layout_dealloc,
};

static PyMethodDef methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL,
     "scan(data, pos, limit, allow_data, layout) -> the next frame or media run."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "ivr_bridge._wsfast", "Compiled media-frame parsing.", -1, methods,
};

PyMODINIT_FUNC PyInit__wsfast(void) {
    if (PyType_Ready(&MediaLayoutType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "MediaLayout", (PyObject *)&MediaLayoutType) < 0 ||
        PyModule_AddIntConstant(m, "MORE", K_MORE) < 0 ||
        PyModule_AddIntConstant(m, "RUN", K_RUN) < 0 ||
        PyModule_AddIntConstant(m, "TEXT", K_TEXT) < 0 ||
        PyModule_AddIntConstant(m, "BINARY", K_BINARY) < 0 ||
        PyModule_AddIntConstant(m, "OTHER", K_OTHER) < 0 ||
        PyModule_AddIntConstant(m, "HUGE", K_HUGE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
