#!/usr/bin/env python3
"""Write the seed corpus (fuzz/seeds/<target>/) from the fixtures of VENDORS.md and of
crates/vendors/tests/*.rs. Run from anywhere: `python3 fuzz/seeds/make_seeds.py`.

The seeds are committed; this script is how they were made, so that a new fixture can be
added the same way. It rewrites every seed it knows and leaves other files alone.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------------------------------------
# Fixtures.

MARKETO_606 = '{"requestId":"e42b#14272d07d78","success":false,"errors":[{"code":"606","message":"Max rate limit \'100\' exceeded with in \'20\' secs"}]}'
MARKETO_1005 = '{"requestId":"e42b#14272d07d78","success":true,"result":[{"id":50,"status":"created"},{"status":"skipped","reasons":[{"code":"1005","message":"Lead already exists"}]}]}'
MARKETO_607 = '{"requestId":"a1#b2","success":false,"errors":[{"code":607,"message":"Daily quota reached"}]}'
MARKETO_601_OBJECT = '{"success":"false","errors":{"code":601.0,"message":"Access token invalid"},"warnings":["w"]}'
MARKETO_CUSTOM_OBJECTS = '{"requestId":"r","success":true,"result":[{"seq":0,"status":"updated","marketoGUID":"g"},{"seq":1,"status":"skipped","reasons":[{"code":"1003","message":"Invalid data"},{"code":1016,"message":"Too many imports"}]},{"seq":2,"status":"skipped"}]}'

ADOBE_422 = '{"type":"https://ns.adobe.com/aep/errors/EXEG-0104-422","status":422,"title":"Unprocessable entity","detail":"Invalid request (report attached). Please check your input and try again.","report":{"errors":["Allowed Adobe version is 1.0 for standard \'Adobe\' at index 0"],"requestId":"0f8821e5-ed1a-4301-b445-5f336fb50ee8","orgId":"53A16ACB5CC1D3760A495C99@AdobeOrg"}}'
ADOBE_207 = '{"requestId":"72eaa048-207e-4dde-bf16-0cb2b21336d5","handle":[],"errors":[{"type":"https://ns.adobe.com/aep/errors/EXEG-0201-503","status":503,"title":"The \'com.adobe.experience.platform.ode\' service is temporarily unable to serve this request. Please try again later."}],"warnings":[{"type":"https://ns.adobe.com/aep/errors/EXEG-0204-200","status":200,"title":"A warning occurred while calling the \'com.adobe.audiencemanager\' service for this request.","report":{"cause":{"message":"Cannot read related customer for device id: ...","code":202}}}]}'
ADOBE_401 = '{"type":"https://ns.adobe.com/aep/errors/EXEG-0503-401","status":401,"title":"Token expired","report":{"requestId":"r-1","orgId":"o@AdobeOrg"}}'
ADOBE_WARNINGS = '{"requestId":"x","errors":"not an array","warnings":["plain text warning",{"type":"about:blank"},3]}'

RESPONSYS_FAILOVER = '{"type":"","title":"API not allowed in secondary","errorCode":"API_NOT_ALLOWED_IN_SECONDARY","detail":"\u2026","errorDetails":[]}'
RESPONSYS_POLLING = '{"responseMessage":{"errorCode":"ASYNC_REQUEST_EXPIRED","detail":"Async request expired while processing.","type":"","title":"Async API request expired","errorDetails":"[]"},\n "requestId":"WGlJSWhsOjoxNTIxMzU5OTI1","apiName":"asyncMergeTriggerEmail","requestTime":"2018-03-18 13:28:45.809","requestProcessedTime":"2018-03-18 13:30:20","status":"ERROR"}'
RESPONSYS_INVALID_PARAMETER = '{"type":"","title":"Invalid request parameters","errorCode":"INVALID_PARAMETER","detail":" <Campaign Name> must be Transactional campaign","errorDetails":[]}'
RESPONSYS_RECORDS = '[{"errorMessage":"","success":true,"recipientId":"123"},{"errorMessage":"RECIPIENT_STATUS_UNDELIVERABLE: email address is bad","success":false,"recipientId":null},{"errorMessage":"no code here","success":false,"recipientId":7}]'
RESPONSYS_PROCESSING = '{"response":{"errorCode":"PROCESSING_REQUEST","title":"In progress","detail":"d","errorDetails":["a",{"b":1}]},"requestId":42,"status":"IN_PROGRESS"}'
RESPONSYS_BOM_NUMERIC = '\ufeff{"errorCode":500,"title":"t","errorDetails":{"x":1}}'

SOAP11_INTERNAL = '''<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
  <soap:Body>
    <soap:Fault>
      <faultcode>soap:Server</faultcode>
      <faultstring>Service API error</faultstring>
      <detail><ns2:ServiceFault xmlns:ns2="http://engage.example/api"><error><code>INTERNAL_ERROR</code><message>localised text</message></error></ns2:ServiceFault></detail>
    </soap:Fault>
  </soap:Body>
</soap:Envelope>'''
SOAP11_ATTRIBUTES = '''<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">
<SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>SOAP-ENV:Client</faultcode><faultstring>Validation failed</faultstring>
<detail><ns1:ServiceException xmlns:ns1="urn:engage"><ns1:errors>
  <ns1:error><ns1:code>ATTRIBUTE_NULL</ns1:code><ns1:message>Attribute supplied is null</ns1:message>
    <ns1:argumentIndex>0</ns1:argumentIndex><ns1:attributeName>externalId</ns1:attributeName><ns1:context/></ns1:error>
  <ns1:error><ns1:code>ATTRIBUTE_TOO_LARGE</ns1:code><ns1:message>Attribute 'name' exceeds allowed size</ns1:message>
    <ns1:argumentIndex>0</ns1:argumentIndex><ns1:attributeName>name</ns1:attributeName><ns1:context>max 64</ns1:context></ns1:error>
</ns1:errors></ns1:ServiceException></detail></SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>'''
SOAP12_NO_SESSION = ('<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><env:Fault>'
    '<env:Code><env:Value>env:Receiver</env:Value><env:Subcode><env:Value>x:Other</env:Value></env:Subcode></env:Code>'
    '<env:Reason><env:Text xml:lang="fr">Pas de session</env:Text><env:Text xml:lang="en">No session</env:Text></env:Reason>'
    '<env:Detail><e:Error xmlns:e="urn:engage"><e:code>NO_SESSION</e:code><e:message>Pas de session</e:message></e:Error></env:Detail>'
    '</env:Fault></env:Body></env:Envelope>')
GENESYS_PLAIN_ERROR = ('<error><code>ATTRIBUTE_NULL</code><message>Attribute supplied is null</message>\n'
    '<argumentIndex>0</argumentIndex><attributeName>externalId</attributeName><context/></error>')
GENESYS_ENTITIES = ('<Envelope><Body><Fault><faultcode>SYSTEM_LIMIT_EXCEEDED</faultcode><faultstring>a &amp; b &#x263A; &unknown;'
    '<![CDATA[<raw>]]></faultstring><!-- c --><?pi x?></Fault></Body></Envelope>')
GENESYS_REQUEST = ('<?xml version="1.0"?><S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Header>'
    '<wsse:Security xmlns:wsse="x"/></S:Header><S:Body><api:createSubCampaign xmlns:api="http://engage.example/api">'
    '<subCampaign><externalId>X1</externalId></subCampaign></api:createSubCampaign></S:Body></S:Envelope>')


def billion_laughs():
    dtd = '<!DOCTYPE lolz [<!ENTITY lol "lol">'
    dtd += '<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    for i in range(2, 10):
        p = i - 1
        dtd += '<!ENTITY lol%d "%s">' % (i, ('&lol%d;' % p) * 10)
    dtd += ']>'
    return ('<?xml version="1.0"?>' + dtd + '<soap:Envelope xmlns:soap="x"><soap:Body><soap:Fault><detail><error>'
            '<code>INTERNAL_ERROR</code><message>&lol9;</message></error></detail></soap:Fault></soap:Body></soap:Envelope>')


HTML_GATEWAY = '<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>'

# ---------------------------------------------------------------------------------------------
# Encodings of the structured targets (see fuzz/src/lib.rs).


def login(status, body):
    return struct.pack('<H', status - 100) + body.encode()


VENDORS = {'marketo': 0, 'adobe': 1, 'responsys': 2, 'genesys': 3, 'generic': 4}
METHODS = {'GET': 0, 'POST': 1, 'PUT': 2, 'DELETE': 3, 'PATCH': 4, 'HEAD': 5, 'OPTIONS': 6}
URIS = {'marketo': 0, 'adobe': 1, 'responsys': 2, 'aftm': 3, 'genesys': 4, 'relative': 5}


def decide(vendor, status, body, headers=(), method='GET', uri=None, attempt=1, history=0, history_failures=0,
           outcome=255, body_mode=0, request_body=0, flags=0, elapsed=0, received_at=1_705_332_600, seed=7):
    control = struct.pack('<BHBBBHBBBBBHIQ', VENDORS[vendor], status - 100, METHODS[method], attempt, history,
                          history_failures, outcome, body_mode, URIS[uri or vendor if (uri or vendor) in URIS else 'relative'],
                          request_body, flags, elapsed, received_at // 16, seed)
    assert len(control) == 27, len(control)
    return control + '\n'.join(headers).encode() + b'\n\n' + body.encode()


SEEDS = {
    'retry_after': {
        'seconds': '120',
        'seconds_ows': ' \t7 ',
        'imf_fixdate': 'Sun, 06 Nov 1994 08:49:47 GMT',
        'rfc850': 'Sunday, 06-Nov-94 08:49:47 GMT',
        'asctime': 'Sun Nov  6 08:49:47 1994',
        'far_future': 'Fri, 31 Dec 9999 23:59:59 GMT',
        'before_1970': 'Wed, 31 Dec 1969 23:59:59 GMT',
        'leap_second': 'Sun Nov  6 23:59:60 1994',
        'rfc850_1950': 'Monday, 06-Nov-50 08:49:47 GMT',
        'saturating': '99999999999999999999999999',
        'garbage': '-5',
        'list': 'retry-after: 5, 30 ,2\n',
        'repeated': 'retry-after: garbage\nretry-after: 3\nretry-after: Sun, 06 Nov 1994 08:49:47 GMT\n',
        'ratelimit': 'ratelimit: "burst";r=0;t=2, "daily";r=0;t=3600\nratelimit-policy: "daily";q=1000;w=86400\n',
        'ratelimit_split': 'ratelimit-remaining: 0\r\nratelimit-reset: 12\r\n',
    },
    'problem': {
        'adobe_422': ADOBE_422,
        'wrong_types': '{"type":5,"title":["x"],"status":"503","detail":"d","x":1}',
        'status_only': '{"status":503,"detail":"down","instance":"/x/1"}',
        'media_problem': 'application/problem+json; charset=utf-8',
        'media_json_suffix': 'application/vnd.api+json',
    },
    'marketo': {
        '606': MARKETO_606,
        '1005_records': MARKETO_1005,
        '607_numeric': MARKETO_607,
        '601_lone_object': MARKETO_601_OBJECT,
        'custom_objects_seq': MARKETO_CUSTOM_OBJECTS,
        'quota_time': struct.pack('<q', 1_710_057_599).decode('latin-1'),
        # One more than MAX_ERRORS (1000): vendor_errors keeps the first 1000.
        'over_max_errors': '{"errors":[' + ','.join(['{}'] * 1001) + ']}',
    },
    'adobe': {
        '207': ADOBE_207,
        '422_problem': ADOBE_422,
        '401_token_expired': ADOBE_401,
        'string_warnings': ADOBE_WARNINGS,
        # One more than MAX_ERRORS (1000): vendor_errors keeps the first 1000.
        'over_max_errors': '{"errors":[' + ','.join(['"e"'] * 1001) + ']}',
    },
    'responsys': {
        'failover': RESPONSYS_FAILOVER,
        'polling_expired': RESPONSYS_POLLING,
        'invalid_parameter': RESPONSYS_INVALID_PARAMETER,
        'records': RESPONSYS_RECORDS,
        'processing': RESPONSYS_PROCESSING,
        'bom_numeric': RESPONSYS_BOM_NUMERIC,
    },
    'genesys_soap': {
        'soap11_internal_error': SOAP11_INTERNAL,
        'soap11_attribute_set': SOAP11_ATTRIBUTES,
        'soap12_no_session': SOAP12_NO_SESSION,
        'plain_error': GENESYS_PLAIN_ERROR,
        'entities_cdata': GENESYS_ENTITIES,
        'request_envelope': GENESYS_REQUEST,
        'billion_laughs': billion_laughs(),
        # XML tells its own encoding: UTF-16 by its byte order mark, ISO-8859-1 by its declaration.
        'utf16le_internal_error': b'\xff\xfe' + SOAP11_INTERNAL.replace('UTF-8', 'UTF-16').encode('utf-16-le'),
        'latin1_internal_error': SOAP11_INTERNAL.replace('UTF-8', 'ISO-8859-1').replace('</message>', ' r\u00e9essayez</message>').encode('latin-1'),
    },
    'logins': {
        'marketo_token': login(200, '{"access_token":"cdf01657-110d-4155-99a7-f986b2ff13a0:int","token_type":"bearer","expires_in":3599,"scope":"apis@acmeinc.com"}'),
        'invalid_client': login(401, '{"error":"invalid_client","error_description":"Bad client credentials"}'),
        'marketo_envelope_606': login(200, MARKETO_606),
        'responsys_token': login(200, '{"authToken":"bPBY3l9Ha9C7uyDO","issuedAt":1427325074342,"endPoint":"https://rest-pod1.responsys.net"}'),
        'responsys_lockout': login(401, '{"type":"","title":"Login failed","errorCode":"PASSWORD_LOCKOUT","detail":"Locked","errorDetails":[]}'),
        'adobe_token': login(200, '{"access_token":"eyJhbGciOiJSUzI1NiJ9.e30.c2ln","token_type":"bearer","expires_in":"86399"}'),
        'gateway_error_object': login(503, '{"error":{"code":"temporarily_unavailable","message":"try later"}}'),
        'html_gateway': login(502, HTML_GATEWAY),
    },
    'classify_decide': {
        'marketo_606': decide('marketo', 200, MARKETO_606, ['content-type: application/json;charset=UTF-8']),
        'marketo_607': decide('marketo', 200, MARKETO_607, ['content-type: application/json']),
        'marketo_1005': decide('marketo', 200, MARKETO_1005, ['content-type: application/json'], method='POST'),
        'marketo_414': decide('marketo', 414, '', [], method='GET', history=1),
        'adobe_207': decide('adobe', 207, ADOBE_207, ['content-type: application/json']),
        'adobe_429': decide('adobe', 429, ADOBE_422, ['content-type: application/problem+json', 'retry-after: 5'], method='POST'),
        'adobe_503_date': decide('adobe', 503, '', ['retry-after: Mon, 15 Jan 2024 15:30:12 GMT']),
        'responsys_failover': decide('responsys', 401, RESPONSYS_FAILOVER, ['content-type: application/json'], method='POST'),
        'responsys_polling': decide('responsys', 200, RESPONSYS_POLLING, ['content-type: application/json']),
        'responsys_aftm_unrecoverable': decide('responsys', 500, '{"errorCode":"UNRECOVERABLE_EXCEPTION","title":"t"}',
                                               ['content-type: application/json'], method='POST', uri='aftm', history=1),
        'responsys_no_response': decide('responsys', 200, '', [], method='POST', outcome=2, history=3, history_failures=7),
        'genesys_internal_error': decide('genesys', 500, SOAP11_INTERNAL, ['content-type: text/xml; charset=utf-8',
                                         '>soapaction: "urn:engage/createSubCampaign"'], method='POST', request_body=1, flags=1),
        'genesys_soap12': decide('genesys', 500, SOAP12_NO_SESSION, ['content-type: application/soap+xml; charset=utf-8'], method='POST'),
        'genesys_billion_laughs': decide('genesys', 500, billion_laughs(), ['content-type: text/xml'], method='POST'),
        'generic_problem_503': decide('generic', 503, '{"type":"about:blank","status":503,"title":"down"}',
                                      ['content-type: application/problem+json', 'retry-after: 120',
                                       'ratelimit: "default";r=0;t=30', '>idempotency-key: k1'], method='POST'),
        'generic_timeout': decide('generic', 200, '', [], outcome=1, history=2, flags=2),
    },
}


def main():
    for target, seeds in SEEDS.items():
        d = os.path.join(HERE, target)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            if isinstance(data, str):
                data = data.encode('utf-8') if name != 'quota_time' else data.encode('latin-1')
            with open(os.path.join(d, name), 'wb') as f:
                f.write(data)
    print(sum(len(s) for s in SEEDS.values()), 'seeds in', len(SEEDS), 'targets')


if __name__ == '__main__':
    main()
