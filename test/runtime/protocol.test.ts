/**
 * Framing of interactive (`prompt i`) replies: whatever way the bytes are chunked, the same replies
 * come out. Streams are byte-exact copies of HAProxy 3.4.7 output
 * (docs/runtime-api.md#framing, docs/runtime-api.md#del-backend-notices, docs/runtime-api.md#show-servers-state).
 */
import { describe, expect, it } from 'vitest'
import { INTERACTIVE_PREAMBLE, ReplyReader, finalReplyOnClose, lastLine, nonInteractiveReply, withoutNotices } from '../../src/runtime/protocol.ts'

const SERVERS_STATE_HEADER = '# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port'
const SERVERS_STATE = `1\n${SERVERS_STATE_HEADER}\n3 webservers 1 web1 127.0.0.1 2 0 1 1 123 1 0 0 0 0 0 0 - 21081 - 0 0 - - 0\n3 webservers 2 dynA 127.0.0.1 0 1 1 1 4 1 0 0 0 0 0 0 - 21083 - 0 0 - - 0`
const DOWN_NOTICE = 'Server jb1/s1 is going DOWN for maintenance. 0 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue.'
const TOO_BIG = "The command line is too big for the buffer size. Please change 'tune.bufsize' in the configuration to use a bigger command."

type Case = { name: string, bytes: Buffer, replies: string[], pending?: string }

const cases: Case[] = [
  { name: 'the `prompt i` preamble alone', bytes: Buffer.from('\n'), replies: [''] },
  {
    name: 'preamble then `add backend`',
    bytes: Buffer.from('\nNew backend registered.\n\n'),
    replies: ['', 'New backend registered.']
  },
  {
    name: 'preamble, `show servers state`, then two empty replies',
    bytes: Buffer.from(`\n${SERVERS_STATE}\n\n\n\n`),
    replies: ['', SERVERS_STATE, '', '']
  },
  {
    name: '`del backend` with stray notices',
    bytes: Buffer.from(`\n${DOWN_NOTICE}\nbackend 'jb1' has no server available!\nBackend deleted.\n\n`),
    replies: ['', `${DOWN_NOTICE}\nbackend 'jb1' has no server available!\nBackend deleted.`]
  },
  {
    name: 'multi-byte UTF-8 (2, 3 and 4 bytes per character)',
    bytes: Buffer.from('\n0x7f261e423940 /café €uro 🚀\n0x7f261e423880 /z ünï\n\nBackend published.\n\n'),
    replies: ['', '0x7f261e423940 /café €uro 🚀\n0x7f261e423880 /z ünï', 'Backend published.']
  },
  {
    name: 'an unfinished reply stays pending',
    bytes: Buffer.from('\nBackend unpub'),
    replies: [''],
    pending: 'Backend unpub'
  },
  {
    name: 'a fatal error ending with a single newline stays pending',
    bytes: Buffer.from(`\n${TOO_BIG}\n`),
    replies: [''],
    pending: `${TOO_BIG}\n`
  }
]

/** Feeds the chunks one by one, draining complete replies after each, as the client does. */
function feed (chunks: Buffer[]): { replies: string[], pending: string } {
  const reader = new ReplyReader()
  const replies: string[] = []
  for (const chunk of chunks) {
    reader.push(chunk)
    for (let r = reader.next(); r !== undefined; r = reader.next()) replies.push(r)
  }
  return { replies, pending: reader.pending }
}

describe('ReplyReader', () => {
  describe.each(cases)('$name', ({ bytes, replies, pending = '' }) => {
    it('in one chunk', () => {
      expect(feed([bytes])).toEqual({ replies, pending })
    })

    it('split at every byte offset', () => {
      for (let i = 0; i <= bytes.length; i++) {
        expect(feed([bytes.subarray(0, i), bytes.subarray(i)]), `split at ${i}`).toEqual({ replies, pending })
      }
    })

    it('split at every pair of byte offsets', () => {
      for (let i = 0; i <= bytes.length; i++) {
        for (let j = i; j <= bytes.length; j++) {
          const got = feed([bytes.subarray(0, i), bytes.subarray(i, j), bytes.subarray(j)])
          if (got.pending !== pending || got.replies.join('\0') !== replies.join('\0')) {
            expect(got, `split at ${i} and ${j}`).toEqual({ replies, pending })
          }
        }
      }
    })

    it('one byte at a time', () => {
      expect(feed([...bytes].map(b => Buffer.from([b])))).toEqual({ replies, pending })
    })
  })

  it('reassembles a character split mid-sequence instead of emitting replacement characters', () => {
    const euro = Buffer.from('€\n\n') // e2 82 ac 0a 0a
    const reader = new ReplyReader()
    reader.push(euro.subarray(0, 1))
    expect(reader.next()).toBeUndefined()
    reader.push(euro.subarray(1, 2))
    expect(reader.next()).toBeUndefined()
    reader.push(euro.subarray(2))
    expect(reader.next()).toBe('€')
    expect(reader.next()).toBeUndefined()
  })

  it('accepts string chunks', () => {
    const reader = new ReplyReader()
    reader.push('\nDone')
    reader.push('.\n\n')
    expect([reader.next(), reader.next(), reader.next()]).toEqual(['', 'Done.', undefined])
  })

  it('returns nothing before any byte arrives', () => {
    const reader = new ReplyReader()
    expect(reader.next()).toBeUndefined()
    expect(reader.pending).toBe('')
  })
})

describe('finalReplyOnClose', () => {
  it('turns "The command line is too big…\\n" into that reply', () => {
    const { replies, pending } = feed([Buffer.from(`\n${TOO_BIG}\n`)])
    expect(replies).toEqual([''])
    expect(finalReplyOnClose(pending)).toBe(TOO_BIG)
  })

  it('strips every trailing newline', () => {
    expect(finalReplyOnClose('The payload is too big.\n\n\n')).toBe('The payload is too big.')
  })

  it('gives nothing for an empty remainder or one cut mid-line', () => {
    expect(finalReplyOnClose('')).toBeUndefined()
    expect(finalReplyOnClose('Backend del')).toBeUndefined()
    expect(finalReplyOnClose('line one\nline tw')).toBeUndefined()
  })
})

describe('nonInteractiveReply', () => {
  it('drops the empty line that ends a reply', () => {
    expect(nonInteractiveReply('3.4.7-1\n\n')).toBe('3.4.7-1')
    expect(nonInteractiveReply('\n')).toBe('')
    expect(nonInteractiveReply('a\nb\n\n')).toBe('a\nb')
  })
})

describe('lastLine', () => {
  it('is the last non-empty line', () => {
    expect(lastLine(`${DOWN_NOTICE}\nBackend deleted.`)).toBe('Backend deleted.')
    expect(lastLine('Backend deleted.\n\n')).toBe('Backend deleted.')
    expect(lastLine('only')).toBe('only')
  })

  it('is empty for an empty reply', () => {
    expect(lastLine('')).toBe('')
    expect(lastLine('\n\n')).toBe('')
  })
})

describe('withoutNotices', () => {
  it('removes server state-change and no-server-available notices', () => {
    const reply = [
      'Server tmpb/s1 is UP/READY (leaving forced maintenance).',
      'Server tmpb/s1 is going DOWN for maintenance. 0 active and 0 backup servers left.',
      'Server tmpb/s2 is DOWN, reason: Layer4 connection problem.',
      "backend 'tmpb' has no server available!",
      "backend 'bsrr' has no server available!",
      'Backend still has attached streams on it.'
    ].join('\n')
    expect(withoutNotices(reply)).toBe('Backend still has attached streams on it.')
  })

  it('keeps every other line, including ones that merely mention a server', () => {
    const reply = 'No such server.\nServer deleted.\nbackend x has no server available'
    expect(withoutNotices(reply)).toBe(reply)
  })
})

describe('INTERACTIVE_PREAMBLE', () => {
  it('is interactive mode without a prompt, one line', () => {
    expect(INTERACTIVE_PREAMBLE).toBe('prompt i\n')
  })
})
