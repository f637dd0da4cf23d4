/**
 * Parsers of `show …` output, fed HAProxy 3.4.7's own text (docs/runtime-api.md#show-servers-state,
 * docs/runtime-api.md#show-stat).
 */
import { describe, expect, it } from 'vitest'
import { RuntimeProtocolError } from '../../src/runtime/errors.ts'
import { StatType, parseServersState, parseShowBackend, parseShowInfo, parseShowStat, splitCsvLine } from '../../src/runtime/parsers.ts'

/** `show stat` as HAProxy 3.4.7 printed it (runtime-evidence/transcripts/t3_show_stat.csv: header and 4 of its rows). */
const SHOW_STAT = [
  '# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,srid,sess_other,h1sess,h2sess,h3sess,req_other,h1req,h2req,h3req,proto,priv_idle_cur,reqbin,reqbout,resbin,resbout,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,ssl_ocsp_staple,ssl_failed_ocsp_staple,h3_data,h3_headers,h3_cancel_push,h3_push_promise,h3_max_push_id,h3_goaway,h3_settings,h3_no_error,h3_general_protocol_error,h3_internal_error,h3_stream_creation_error,h3_closed_critical_stream,h3_frame_unexpected,h3_frame_error,h3_excessive_load,h3_id_error,h3_settings_error,h3_missing_settings,h3_request_rejected,h3_request_cancelled,h3_request_incomplete,h3_message_error,h3_connect_error,h3_version_fallback,pack_decompression_failed,qpack_encoder_stream_error,qpack_decoder_stream_error,quic_rxbuf_full,quic_dropped_pkt,quic_dropped_pkt_bufoverrun,quic_dropped_parsing_pkt,quic_socket_full,quic_sendto_err,quic_sendto_err_unknwn,quic_sent_pkt,quic_lost_pkt,quic_too_short_dgram,quic_retry_sent,quic_retry_validated,quic_retry_error,quic_half_open_conn,quic_hdshk_fail,quic_stless_rst_sent,quic_conn_migration_done,quic_transp_err_no_error,quic_transp_err_internal_error,quic_transp_err_connection_refused,quic_transp_err_flow_control_error,quic_transp_err_stream_limit_error,quic_transp_err_stream_state_error,quic_transp_err_final_size_error,quic_transp_err_frame_encoding_error,quic_transp_err_transport_parameter_error,quic_transp_err_connection_id_limit,quic_transp_err_protocol_violation_error,quic_transp_err_invalid_token,quic_transp_err_application_error,quic_transp_err_crypto_buffer_exceeded,quic_transp_err_key_update_error,quic_transp_err_aead_limit_reached,quic_transp_err_no_viable_path,quic_transp_err_crypto_error,quic_transp_err_unknown_error,quic_data_blocked,quic_stream_data_blocked,quic_streams_blocked_bidi,quic_streams_blocked_uni,quic_ncbuf_gap_limit,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,',
  'myfrontend1,FRONTEND,,,0,0,9985,0,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,0,,,,0,0,0,0,0,0,,0,0,0,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,http,,0,0,0,0,0,0,0,,,0,0,,,,,,,0,,,,,,,,,,0,0,0,0,0,0,0,0,,,0,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,',
  'webservers,web1,0,0,0,0,,0,0,0,,0,,0,0,0,0,no check,1,1,0,,,72,,,1,3,1,,0,,2,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:21081,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,0,1,,,,0,,,,,,,,,,0,0,0,0,0,-,0,0,0,0,0,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,',
  'webservers,BACKEND,0,0,0,0,1997,0,0,0,0,0,,0,0,0,0,UP,1,1,0,,3,72,6,,1,3,0,,0,,1,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,0,0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,,http,unknown,,,,,,,0,0,0,0,0,,,0,0,0,0,0,,,,,1,0,0,0,,,,,,,,,,,,0,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,',
  'dyn1,BACKEND,0,0,0,0,0,0,0,0,0,0,,0,0,0,0,UP,0,0,0,,0,59,,,1,8,0,,0,,1,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,0,0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,,http,unknown,,,,,,,0,0,0,0,0,,,0,0,0,0,0,,,,,0,0,0,0,,,,,,,,,,,,0,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,'
].join('\n')

const HEADER = SHOW_STAT.split('\n')[0] as string
const COLUMNS = HEADER.slice(2).split(',')

/** A row with the given columns set and every other one empty, in the header's order. */
function csvRow (values: Record<string, string>): string {
  return COLUMNS.map(c => values[c] ?? '').join(',')
}

describe('parseShowStat', () => {
  it('keys every row by the real 3.4.7 header', () => {
    const rows = parseShowStat(SHOW_STAT)
    expect(rows.map(r => `${r.pxname}/${r.svname}`)).toEqual([
      'myfrontend1/FRONTEND', 'webservers/web1', 'webservers/BACKEND', 'dyn1/BACKEND'
    ])
    // Every line ends with a `,`: the empty last name is no column.
    expect(COLUMNS.at(-1)).toBe('')
    expect(Object.keys(rows[0] as object)).toEqual(COLUMNS.slice(0, -1))
    const [fe, web1, be, dyn1] = rows
    expect(fe).toMatchObject({ type: StatType.FRONTEND, status: 'OPEN', mode: 'http' })
    expect(web1).toMatchObject({ type: StatType.SERVER, status: 'no check', addr: '127.0.0.1:21081', weight: '1', iid: '3', sid: '1', check_status: '' })
    expect(be).toMatchObject({ type: StatType.BACKEND, status: 'UP', mode: 'http', algo: 'unknown' })
    expect(dyn1).toMatchObject({ type: StatType.BACKEND, status: 'UP', act: '0' })
  })

  it('keeps columns after the `-` separator column', () => {
    const web1 = parseShowStat(SHOW_STAT)[1]
    expect(web1).toHaveProperty('-', '-')
    expect(web1).toHaveProperty('ssl_sess')
  })

  it('unquotes fields that contain commas or quotes', () => {
    const desc = 'Layer4 connection problem, info: "Connection refused"'
    const line = csvRow({ pxname: 'st', svname: 'h1', status: 'DOWN', type: '2', check_desc: `"${desc.replaceAll('"', '""')}"`, addr: '[::1]:21082' })
    const [row] = parseShowStat(`${HEADER}\n${line}`)
    expect(row).toMatchObject({ pxname: 'st', svname: 'h1', status: 'DOWN', check_desc: desc, addr: '[::1]:21082', type: '2' })
  })

  it('parses a header without rows as no rows', () => {
    expect(parseShowStat(HEADER)).toEqual([])
  })

  it('fills columns missing at the end of a short row with empty strings', () => {
    const [row] = parseShowStat(`${HEADER}\nwebservers,BACKEND`)
    expect(row).toMatchObject({ pxname: 'webservers', svname: 'BACKEND', status: '', type: '' })
  })

  it.each([
    ['an empty reply', ''],
    ['a refusal', "Can't find backend."],
    ['a row without header', 'webservers,web1,0,0'],
    ['a different header', '# name\nwebservers']
  ])('rejects %s with RuntimeProtocolError', (_name, reply) => {
    expect(() => parseShowStat(reply)).toThrow(RuntimeProtocolError)
  })
})

describe('splitCsvLine', () => {
  it.each([
    ['a,b,c', ['a', 'b', 'c']],
    ['', ['']],
    [',,', ['', '', '']],
    ['"a,b",c', ['a,b', 'c']],
    ['"say ""hi""",x', ['say "hi"', 'x']],
    ['"",x', ['', 'x']],
    ['a"b,c', ['a"b', 'c']],
    ['UP 1/2,* L4OK', ['UP 1/2', '* L4OK']]
  ])('%j', (line, fields) => {
    expect(splitCsvLine(line)).toEqual(fields)
  })
})

const SERVERS_STATE_HEADER = '# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port'

describe('parseServersState', () => {
  it('parses the 3.4.7 reply, `-` becoming an empty string', () => {
    const reply = `1\n${SERVERS_STATE_HEADER}\n3 webservers 1 web1 127.0.0.1 2 0 1 1 123 1 0 0 0 0 0 0 - 21081 - 0 0 - - 0`
    const rows = parseServersState(reply)
    expect(rows).toHaveLength(1)
    expect(rows[0]).toEqual({
      be_id: '3',
      be_name: 'webservers',
      srv_id: '1',
      srv_name: 'web1',
      srv_addr: '127.0.0.1',
      srv_op_state: '2',
      srv_admin_state: '0',
      srv_uweight: '1',
      srv_iweight: '1',
      srv_time_since_last_change: '123',
      srv_check_status: '1',
      srv_check_result: '0',
      srv_check_health: '0',
      srv_check_state: '0',
      srv_agent_state: '0',
      bk_f_forced_id: '0',
      srv_f_forced_id: '0',
      srv_fqdn: '',
      srv_port: '21081',
      srvrecord: '',
      srv_use_ssl: '0',
      srv_check_port: '0',
      srv_check_addr: '',
      srv_agent_addr: '',
      srv_agent_port: '0'
    })
  })

  it('keeps HAProxy order (dynamic servers newest first) and FQDN servers without address', () => {
    const reply = [
      '1',
      SERVERS_STATE_HEADER,
      '9 dyn1 2 s2 - 0 1 1 1 4 1 0 0 0 0 0 0 localhost 21082 - 0 0 - - 0',
      '9 dyn1 1 s1 ::1 2 8 1 1 9 6 3 1 6 0 0 0 - 21082 - 0 0 - - 0'
    ].join('\n')
    const rows = parseServersState(reply)
    expect(rows.map(r => r.srv_name)).toEqual(['s2', 's1'])
    expect(rows[0]).toMatchObject({ srv_addr: '', srv_fqdn: 'localhost', srv_admin_state: '1' })
    expect(rows[1]).toMatchObject({ srv_addr: '::1', srv_admin_state: '8', srv_check_state: '6' })
  })

  it('gives no rows for a backend without servers (version and header only)', () => {
    expect(parseServersState(`1\n${SERVERS_STATE_HEADER}`)).toEqual([])
    expect(parseServersState(`1\n${SERVERS_STATE_HEADER}\n`)).toEqual([])
  })

  it.each([
    ['an empty reply', ''],
    ['an unknown backend', "Can't find backend."],
    ['another format version', `2\n${SERVERS_STATE_HEADER}`],
    ['a missing header', '1\n3 webservers 1 web1 127.0.0.1 2 0 1 1'],
    ['a version only', '1']
  ])('rejects %s with RuntimeProtocolError', (_name, reply) => {
    expect(() => parseServersState(reply)).toThrow(RuntimeProtocolError)
  })
})

/** `show info` of 3.4.7, shortened to the fields around the ones we read (t2_crlf_nul.txt, t6_info_typed.txt). */
const SHOW_INFO = [
  'Name: HAProxy',
  'Version: 3.4.7-1',
  'Release_date: 2026/10/14',
  'Nbthread: 2',
  'Nbproc: 1',
  'Process_num: 1',
  'Pid: 6541',
  'Uptime: 0d 0h01m41s',
  'Uptime_sec: 101',
  'Memmax_MB: 0',
  'Stopping: 0',
  'Jobs: 4',
  'node: lb-1.example',
  'description: ',
  'Start_time_sec: 1795495485',
  'Tainted: 0'
].join('\n')

describe('parseShowInfo', () => {
  it('reads the identifying fields', () => {
    expect(parseShowInfo(SHOW_INFO)).toEqual({
      version: '3.4.7-1',
      releaseDate: '2026/10/14',
      pid: 6541,
      uptimeSec: 101,
      startTimeSec: 1795495485,
      stopping: false,
      nodeName: 'lb-1.example'
    })
  })

  it('sees a stopping (old) worker', () => {
    expect(parseShowInfo(SHOW_INFO.replace('Stopping: 0', 'Stopping: 1')).stopping).toBe(true)
  })

  it('keeps colons inside values', () => {
    expect(parseShowInfo(SHOW_INFO.replace('node: lb-1.example', 'node: host:with:colons')).nodeName).toBe('host:with:colons')
  })

  it.each([
    ['an empty reply', ''],
    ['a refusal', 'Permission denied'],
    ['no Version', SHOW_INFO.replace('Version: 3.4.7-1\n', '')],
    ['no Pid', SHOW_INFO.replace('Pid: 6541\n', '')],
    ['a Pid that is not a number', SHOW_INFO.replace('Pid: 6541', 'Pid: abc')],
    ['an empty Pid', SHOW_INFO.replace('Pid: 6541', 'Pid: ')],
    ['no Start_time_sec', SHOW_INFO.replace('Start_time_sec: 1795495485\n', '')],
    ['no Uptime_sec', SHOW_INFO.replace('Uptime_sec: 101\n', '')]
  ])('rejects %s with RuntimeProtocolError', (_name, reply) => {
    expect(() => parseShowInfo(reply)).toThrow(RuntimeProtocolError)
  })
})

describe('parseShowBackend', () => {
  it('lists the names in HAProxy order', () => {
    expect(parseShowBackend('# name\nwebservers\nstatic_unref\nstatic_empty\nstatic_ref\ndyn1')).toEqual([
      'webservers', 'static_unref', 'static_empty', 'static_ref', 'dyn1'
    ])
  })

  it('gives an empty list when there is no backend', () => {
    expect(parseShowBackend('# name')).toEqual([])
  })

  it.each([
    ['an empty reply', ''],
    ['a refusal', 'Permission denied'],
    ['names without header', 'webservers\ndyn1']
  ])('rejects %s with RuntimeProtocolError', (_name, reply) => {
    expect(() => parseShowBackend(reply)).toThrow(RuntimeProtocolError)
  })
})

describe('RuntimeProtocolError from parsers', () => {
  it('carries the verb and the reply', () => {
    const err = (() => { try { parseShowStat('nope'); return undefined } catch (e) { return e } })()
    expect(err).toBeInstanceOf(RuntimeProtocolError)
    expect(err).toMatchObject({ verb: 'show stat', reply: 'nope', code: 'RUNTIME_PROTOCOL' })
  })
})
